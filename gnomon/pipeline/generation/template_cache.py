"""Template symmetry kept on disk, so a new process does not pay spglib again.

SAPS analyses each template once (:func:`gnomon.pipeline.generation.saps_fast.template_symmetry`:
spglib's operations as site permutations, the space-group symbol, the oxidation guess, the
template check), tens of milliseconds a template, and caches the result in memory. Every
campaign round and every ``gnomon generate`` is a new process, so without this module each
paid for every template again: a cold run of the 123 AFLOW prototypes into one system spent
nine tenths of its time in spglib.

The record holds the cell's ``as_dict()`` as well, and the verify step's StructureMatcher
verdicts on pairs of one template's outcomes (cached in memory per template and pair of
relabelled decorations): once spglib was cached, a cold run of one system spent most of its
remaining time on a handful of such fits.

A record is a small JSON file named by a hash of the template's content (rounded lattice,
species, fractional coordinates), the supercell, ``symprec`` and the versions of this format,
spglib and pymatgen, so a changed template or library never reads a stale answer. Files are
written to a temporary name and renamed into place (atomic on POSIX), so concurrent
processes never read half a record; a file that cannot be read is recomputed and rewritten.

Where: ``$GNOMON_CACHE_DIR`` (``off`` turns the cache off), else ``$GNOMON_HOME/cache``, else
``$XDG_CACHE_HOME/gnomon`` or ``~/.cache/gnomon``; records live in its
``template-symmetry`` folder. A cache is never needed: any error reading or writing it is
logged at debug level and the symmetry is computed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pymatgen.core
import spglib

logger = logging.getLogger(__name__)

FORMAT = 1
VERSION = f"{FORMAT}|spglib {spglib.__version__}|pymatgen {pymatgen.core.__version__}"


def cache_dir() -> Path | None:
    """The folder template symmetry records are kept in, or None when caching is off."""
    explicit = os.environ.get("GNOMON_CACHE_DIR")
    if explicit is not None:
        return None if explicit.strip().lower() in ("", "off", "0", "none") else Path(explicit)
    if os.environ.get("GNOMON_HOME"):
        return Path(os.environ["GNOMON_HOME"]) / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gnomon"


def record_path(content_key: tuple) -> Path | None:
    """Where the record of a template with this content key (``saps_fast._content_key``)
    lives, or None when caching is off."""
    root = cache_dir()
    if root is None:
        return None
    h = hashlib.sha256(VERSION.encode())
    for part in content_key:
        h.update(b"\x1f")
        h.update(part if isinstance(part, bytes) else repr(part).encode())
    return root / "template-symmetry" / f"{h.hexdigest()[:32]}.json"


def load(content_key: tuple) -> dict[str, Any] | None:
    """The stored record, or None (absent, unreadable, or caching off)."""
    path = record_path(content_key)
    if path is None:
        return None
    try:
        record = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        logger.debug("template symmetry cache: cannot read %s (%s)", path, exc)
        return None
    if not isinstance(record, dict) or record.get("version") != VERSION:
        return None
    return record


def store(content_key: tuple, record: dict[str, Any]) -> None:
    """Write a record atomically (a temporary file renamed into place)."""
    path = record_path(content_key)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps({**record, "version": VERSION}))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        logger.debug("template symmetry cache: cannot write %s (%s)", path, exc)


def add_fits(content_key: tuple, fits: list[tuple[tuple, tuple, bool]]) -> None:
    """Add a template's new verify verdicts ``(first, second, fit)`` to its record in one
    read, extend and atomic rewrite (a template of four species meets thousands: rewritten
    once each, the record cost the square of their number; a verdict lost to a concurrent
    writer is only computed again)."""
    if not fits:
        return
    record = load(content_key)
    if record is None:
        return
    record.setdefault("fits", []).extend([list(a), list(b), fit] for a, b, fit in fits)
    store(content_key, record)
