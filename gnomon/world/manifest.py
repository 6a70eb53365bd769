"""A world's manifest (what it holds, how it was labelled, its files' hashes) and its checks."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gnomon.world.coverage import COVER_ANIONS, world_coverage
from gnomon.world.files import WorldFiles, read_jsonl_gz, sha256
from gnomon.world.oracle import oracle_description, results_done


@dataclass
class Tally:
    """How many structures a world's plans held, how many the oracle tried and failed on."""

    planned: int
    attempted: int
    failed: int


def _counts(rows: list[dict[str, Any]], systems: list[str], held: list[str],
            tally: Tally) -> dict[str, Any]:
    per_system = {r["chemsys"] for r in rows}
    arity = Counter(s.count("-") + 1 for s in per_system if s.count("-") >= 1)
    elements = sorted({e for r in rows for e in r["chemsys"].split("-")})
    return {"structures": len(rows), "planned": tally.planned, "attempted": tally.attempted,
            "oracle_failures": tally.failed,
            "systems": len(per_system), "planned_systems": len(systems),
            "by_arity": {str(k): v for k, v in sorted(arity.items())},
            "elements": len(elements), "stable": sum(bool(r["is_stable"]) for r in rows),
            "by_generator": dict(Counter(r["generator"] for r in rows)),
            "by_wave": {str(k): v for k, v in sorted(Counter(
                r.get("wave") or 0 for r in rows).items())},
            "heldout_systems": len(held)}


def write_manifest(files: WorldFiles, rows: list[dict[str, Any]], systems: list[str],
                   held: list[str], tally: Tally, grown_waves: list[int] | None = None,
                   cover: dict[str, Any] | None = None,
                   anions: Sequence[str] = COVER_ANIONS) -> None:
    """The manifest of the world just written to ``files`` (its hashes included), with its
    cation–anion coverage and, when a cover grew it, the cover's record."""
    per_system: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        per_system[r["chemsys"]][r["generator"]] += 1
    manifest = {
        "description": "gnomon benchmark world: oracle-relaxed structures (gnomon world)",
        "built": time.strftime("%Y-%m-%d"),
        "oracle": oracle_description(),
        "complete": tally.attempted == tally.planned,
        "counts": _counts(rows, systems, held, tally),
        "per_system": {s: dict(c) for s, c in sorted(per_system.items())},
        **({"grown_waves": grown_waves} if grown_waves else {}),
        **({"cover": cover} if cover else {}),
        "coverage": world_coverage(rows, held, anions).as_dict(),
        "files": {p.name: sha256(p) for p in (files.world, files.heldout)},
    }
    files.manifest.write_text(json.dumps(manifest, indent=1) + "\n")


@dataclass
class CheckReport:
    """What ``check`` found: each file against its manifest hash, the rows, the problems."""

    files: list[tuple[str, bool, str]] = field(default_factory=list)  # name, ok, digest
    structures: int | None = None
    systems: int | None = None
    held_out: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(files: WorldFiles) -> CheckReport:
    """The shipped files against the manifest's hashes and its count of structures."""
    report = CheckReport()
    if not files.manifest.is_file():
        report.problems.append(f"{files.manifest} is missing")
        return report
    manifest = json.loads(files.manifest.read_text())
    for name, digest in manifest["files"].items():
        path = files.root / name
        got = sha256(path) if path.exists() else "missing"
        report.files.append((name, got == digest, got))
        if got != digest:
            report.problems.append(f"{name} does not match the hash in manifest.json")
    if report.problems:  # a damaged file is not read further
        return report
    rows = list(read_jsonl_gz(files.world))
    n = manifest["counts"]["structures"]
    if len(rows) != n:
        report.problems.append(f"world.jsonl.gz holds {len(rows)} rows, the manifest says {n}")
    report.structures, report.systems = len(rows), len({r["chemsys"] for r in rows})
    report.held_out = len(files.heldout_systems())
    return report


def status(files: WorldFiles) -> list[str]:
    """How far a build, grow or cover has come: structures planned per wave, relaxed per
    folder."""
    grown = sorted(files.grow.glob("wave*.jsonl.gz"),
                   key=lambda p: int(p.name[4:].split(".")[0]))
    lines = []
    for path in [files.work / "wave1.jsonl.gz", files.work / "wave2.jsonl.gz", *grown]:
        n = sum(1 for _ in read_jsonl_gz(path)) if path.exists() else 0
        lines.append(f"{path.parent.name}/{path.name.split('.')[0]}: {n} planned")
    cover_plan = files.cover / "plan.jsonl"
    if cover_plan.exists():
        with cover_plan.open() as fh:
            lines.append(f"cover/plan: {sum(1 for _ in fh)} planned")
    for folder in (files.work, files.grow, files.cover):
        if folder == files.cover and not folder.exists():
            continue
        done = results_done(folder) if folder.exists() else {}
        failed = sum("error" in r for r in done.values())
        lines.append(f"{folder.name}: relaxed {len(done)} ({failed} failed)")
    return lines
