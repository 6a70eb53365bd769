"""Where a world lives on disk, and the gzipped JSON-lines files it is made of.

A world folder holds what ships (``world.jsonl.gz``, ``heldout.json``, ``manifest.json``), a
``work/`` folder for a build in progress (not shipped) and a ``grow/`` folder for the waves
a grow adds and a ``cover/`` folder for the binaries a cover adds (both committed as they go,
so that a grow or cover stopped in one session resumes in the next).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKOUT_WORLD = Path(__file__).resolve().parents[2] / "bench" / "world"
"""The shipped world of a source checkout (``bench/world``)."""


def default_world_dir() -> Path:
    """The shipped world when gnomon runs from its checkout, else ``bench/world`` here."""
    return CHECKOUT_WORLD if CHECKOUT_WORLD.is_dir() else Path("bench") / "world"


@dataclass(frozen=True)
class WorldFiles:
    """The paths of one world folder."""

    root: Path

    @property
    def world(self) -> Path:
        return self.root / "world.jsonl.gz"

    @property
    def heldout(self) -> Path:
        return self.root / "heldout.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def work(self) -> Path:
        """A build's plans and oracle results (not shipped)."""
        return self.root / "work"

    @property
    def grow(self) -> Path:
        """A grow's plans and oracle results (committed, so that a grow resumes)."""
        return self.root / "grow"

    @property
    def cover(self) -> Path:
        """A cover's plans and oracle results (committed, so that a cover resumes)."""
        return self.root / "cover"

    @property
    def waves(self) -> Path:
        """{wave: structures per system it grows the world to}."""
        return self.grow / "waves.json"

    def heldout_systems(self) -> set[str]:
        return set(json.loads(self.heldout.read_text())["systems"])


def load_world(files: WorldFiles) -> tuple[list[dict[str, Any]], set[str]]:
    """The world's rows and its held-out systems."""
    return list(read_jsonl_gz(files.world)), files.heldout_systems()


def write_jsonl_gz(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """``rows`` as gzipped JSON lines, replacing ``path`` only once all are written."""
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_jsonl_gz(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def cached_plan(path: Path, make: Callable[[], Iterable[Any]]) -> list[dict[str, Any]]:
    """A wave's plan: read from ``path`` when it was made before, else made and written, so
    that a stopped build plans nothing twice (``make`` yields objects with ``as_dict()``)."""
    if path.exists():
        return list(read_jsonl_gz(path))
    rows = [p.as_dict() for p in make()]
    write_jsonl_gz(path, rows)
    return rows


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
