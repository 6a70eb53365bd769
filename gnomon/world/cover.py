"""Covering a world's chemistry before its depth: the cation–anion binaries it lacks, and
(``between_cations``) the binaries of its cations with each other.

A screening model must know the binaries its elements form with the common anions, as a
Materials-Project-trained model does (issue 26, lever 0). A cover adds to a world every
cation–anion binary system of its element set (optionally extended) that holds fewer than
``per_system`` structures: a few small prototype cells each, charge-balanced first
(:mod:`gnomon.world.plan_cover`). It goes anion by anion in the order given (oxides,
sulfides and halides of every cation first): plan the anion's systems, relax them, go on;
then, with ``between_cations``, cation by cation its alloys and intermetallics with the
cations after it (``Li-Na`` ... ``Li-Zr``, then ``Na-Mg`` ...), which a screen needs for any
system with two cations (Li-Mn in Li-Mn-O) and which no anion cover reaches.

* **Hold-out:** held-out systems are never planned into; a covered system that is a
  subsystem of a held-out one trains, and the manifest lists it (it enters the held-out
  system's hull, so the benchmark can say so).
* **Rows:** wave ``COVER_WAVE`` (0), the known chemistry a campaign starts from.
* **Resumable** as a grow is: the plan (``cover/plan.jsonl``, one line per structure, and
  ``cover/systems.jsonl``, one line per system planned) and the oracle's results
  (``cover/relaxed-*.jsonl``, one line per result per worker) are appended as they are made;
  a stopped cover plans and relaxes nothing twice.
* **The world** is rewritten when the cover is complete, or at its deadline with
  ``write_partial``: the world's rows and every relaxed cover structure, labelled together
  (the hulls of the touched systems change with them).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gnomon.pipeline.generation.streaming import parallel_map
from gnomon.world.coverage import (
    COVER_ANIONS,
    DEFAULT_PER_SYSTEM,
    binaries,
    cation_pairs,
    cations_of,
    ternaries,
)
from gnomon.world.files import WorldFiles, load_world, write_jsonl_gz
from gnomon.world.label import judged, label, rows_as_plan
from gnomon.world.manifest import Tally, write_manifest
from gnomon.world.oracle import relax_all, results_done
from gnomon.world.plan import plan_elements
from gnomon.world.plan_cover import COVER_WAVE, cover_templates, plan_cover_one
from gnomon.world.systems import ELEMENTS, world_systems

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoverSpec:
    """What a cover grows: the anions (in the order it grows them), the elements beyond the
    world's own, the structures each binary system should reach, optionally only some
    cations (default: every element that is not an anion), whether the cations' binaries
    with each other are grown too (after the anions'), and how many A–B–X ternaries per B
    cation and anion are grown last (:func:`gnomon.world.coverage.ternaries`; 0: none)."""

    anions: tuple[str, ...] = COVER_ANIONS
    extra_elements: tuple[str, ...] = ()
    per_system: int = DEFAULT_PER_SYSTEM
    only_cations: tuple[str, ...] = ()
    between_cations: bool = False
    ternary_partners: int = 0

    @property
    def cations(self) -> list[str]:
        every = cations_of(self.extra_elements, self.anions)
        return [c for c in every if c in self.only_cations] if self.only_cations else every

    def groups(self) -> list[tuple[str, list[str]]]:
        """The systems in the order the cover grows them, grouped: each anion's binaries with
        every cation, then (``between_cations``) each cation's with the cations after it,
        then (``ternary_partners``) each anion's A–B–X ternaries."""
        out = [(a, binaries(self.cations, [a])) for a in self.anions]
        out += cation_pairs(self.cations) if self.between_cations else []
        return out + [(f"{a} ternaries", systems) for a, systems in
                      ternaries(self.cations, self.anions, self.ternary_partners)]

    def systems(self) -> list[str]:
        return [s for _, systems in self.groups() for s in systems]


def missing_systems(spec: CoverSpec, systems: Sequence[str], world_rows: list[dict[str, Any]],
                    held: set[str], planned_to: dict[str, int]) -> list[str]:
    """Those of ``systems`` the cover should still plan: fewer than ``spec.per_system``
    structures in the world, not planned to that many yet, and never a held-out system."""
    have = Counter(r["chemsys"] for r in world_rows)
    return [s for s in systems
            if s not in held and have[s] < spec.per_system
            and planned_to.get(s, 0) < spec.per_system]


@dataclass
class CoverPlan:
    """A cover's plan on disk: its structures and, per system, the count it was planned to."""

    folder: Path
    structures: list[dict[str, Any]] = field(default_factory=list)
    planned_to: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> CoverPlan:
        plan = cls(folder)
        plan.structures = list(_read_lines(folder / "plan.jsonl"))
        for rec in _read_lines(folder / "systems.jsonl"):
            plan.planned_to[rec["system"]] = max(rec["per_system"],
                                                 plan.planned_to.get(rec["system"], 0))
        return plan

    def add(self, system: str, per_system: int, structures: Iterable[dict[str, Any]]) -> None:
        """Append one system's new structures, then the line that says it is planned (a kill
        between the two plans the system again, deduplicated against what is written)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        new = [{**s, "wave": COVER_WAVE} for s in structures]
        with (self.folder / "plan.jsonl").open("a") as fh:
            fh.writelines(json.dumps(s) + "\n" for s in new)
        with (self.folder / "systems.jsonl").open("a") as fh:
            fh.write(json.dumps({"system": system, "per_system": per_system,
                                 "planned": len(new)}) + "\n")
        self.structures += new
        self.planned_to[system] = max(per_system, self.planned_to.get(system, 0))

    def of(self, systems: Iterable[str]) -> list[dict[str, Any]]:
        wanted = set(systems)
        return [p for p in self.structures if p["chemsys"] in wanted]


def _read_lines(path: Path) -> Iterable[dict[str, Any]]:
    if not path.exists():
        return
    with path.open() as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that system is planned again
                continue


def _plan_systems(plan: CoverPlan, systems: Sequence[str], spec: CoverSpec,
                  world_rows: list[dict[str, Any]], held: set[str], workers: int,
                  deadline: float | None, templates: list[dict[str, Any]]) -> None:
    """Plan ``systems`` (:func:`missing_systems`) up to ``spec.per_system`` structures,
    counting what the world and the cover's plan hold already; ``templates``: the labelled
    rows whose compounds near their hull are substituted into (an earlier cover's too, so
    that its binaries template the ternaries)."""
    inputs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in world_rows:
        inputs[r["chemsys"]].append(r["unrelaxed"])
    for p in plan.structures:
        inputs[p["chemsys"]].append(p["structure"])
    known = cover_templates(templates, held)
    jobs = [(s, spec.per_system - len(inputs[s]), inputs[s], known) for s in systems]
    for system, batch in parallel_map(plan_cover_one, jobs, workers):
        plan.add(system, spec.per_system, (p.as_dict() for p in batch))
        log.info("cover: planned %s: %d structures", system, len(batch))
        if deadline is not None and time.time() >= deadline:
            break


def _plan_new_elements(plan: CoverPlan, spec: CoverSpec, world_rows: list[dict[str, Any]],
                       per_system: int) -> list[str]:
    """The elemental references of elements the world lacks (ASE's dcdft structures)."""
    present = {r["chemsys"] for r in world_rows if "-" not in r["chemsys"]}
    new = [e for e in spec.extra_elements if e not in present and e not in ELEMENTS]
    for el in new:
        if plan.planned_to.get(el, 0) < per_system:
            plan.add(el, per_system, (p.as_dict() for p in plan_elements([el])))
    return new


def unknown_elements(elements: Iterable[str]) -> list[str]:
    """Those of ``elements`` a cover cannot reference (no dcdft structure)."""
    from ase.collections import dcdft  # heavy: ase's collections database

    return [e for e in elements if e not in dcdft.names]


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline


def cover(files: WorldFiles, spec: CoverSpec, workers: int, deadline: float | None = None,
          write_partial: bool = False) -> bool:
    """Plan and relax the cover anion by anion (see the module docstring); resumable.
    Returns whether it is complete; the world is rewritten then, or with ``write_partial``
    at the deadline."""
    rows, held = load_world(files)
    world_rows = [r for r in rows if r.get("wave") != COVER_WAVE]
    plan = CoverPlan.read(files.cover)
    elements = _plan_new_elements(plan, spec, world_rows, spec.per_system)
    relax_all(plan.of(elements), files.cover, workers, deadline=deadline)
    for group, systems in spec.groups():
        if _past(deadline):
            break
        missing = missing_systems(spec, systems, world_rows, held, plan.planned_to)
        _plan_systems(plan, missing, spec, world_rows, held, workers, deadline, rows)
        todo = plan.of(systems)
        log.info("cover: %s: %d systems, %d structures planned", group, len(systems), len(todo))
        relax_all(todo, files.cover, workers, deadline=deadline)
    complete = (not missing_systems(spec, spec.systems(), world_rows, held, plan.planned_to)
                and not _missing(plan, files.cover))
    if complete or write_partial:
        write_covered_world(files, spec, complete)
    else:
        log.info("cover: stopped before it was complete; the world is unchanged (run cover "
                 "again to resume, or with --write-partial to write what is done)")
    return complete


def _missing(plan: CoverPlan, folder: Path) -> int:
    done = results_done(folder)
    return sum(1 for p in plan.structures if p["id"] not in done)


def cover_part(files: WorldFiles) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """A cover's plan and its judged results, for whoever writes the world (cover, grow)."""
    if not files.cover.exists():
        return [], {}
    return CoverPlan.read(files.cover).structures, judged(results_done(files.cover))


def cover_record(files: WorldFiles, plan: list[dict[str, Any]],
                 results: dict[str, dict[str, Any]], held: set[str],
                 complete: bool | None = None) -> dict[str, Any] | None:
    """The manifest's ``cover`` section: what the cover planned and relaxed, whether it is
    complete (``None``: as the manifest says), and which of its systems lie inside a held-out
    system (their rows enter that system's hull)."""
    if not plan:
        return None
    if complete is None:
        manifest = json.loads(files.manifest.read_text()) if files.manifest.exists() else {}
        complete = bool(manifest.get("cover", {}).get("complete", False))
    systems = sorted({p["chemsys"] for p in plan})
    spaces = [set(h.split("-")) for h in held]
    attempted = [p for p in plan if p["id"] in results]
    planned_to = CoverPlan.read(files.cover).planned_to
    return {"wave": COVER_WAVE, "complete": complete, "systems": len(systems),
            "per_system": max(planned_to.values(), default=0),
            "tally": {"planned": len(plan), "attempted": len(attempted),
                      "failed": sum(1 for p in attempted if "error" in results[p["id"]])},
            "relaxed_by_anion": _by_anion(plan, results),
            "subsystems_of_heldout": [s for s in systems
                                      if any(set(s.split("-")) < sp for sp in spaces)]}


def _by_anion(plan: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Structures the cover relaxed, per anion."""
    count: Counter = Counter()
    for p in plan:
        r = results.get(p["id"])
        if r is not None and "error" not in r and "-" in p["chemsys"]:
            count[next((a for a in COVER_ANIONS if a in p["chemsys"].split("-")),
                       "cation-cation")] += 1
    return dict(count)


def write_covered_world(files: WorldFiles, spec: CoverSpec, complete: bool) -> None:
    """The world's rows (but earlier cover rows) and the cover's relaxed structures, labelled
    together: one hull per system over all."""
    rows, held = load_world(files)
    manifest = json.loads(files.manifest.read_text())
    plan0, results0 = rows_as_plan([r for r in rows if r.get("wave") != COVER_WAVE])
    results0 = judged(results0)
    plan, results = cover_part(files)
    labelled = label(plan0 + plan, {**results0, **results}, files.cover / "world.db")
    (files.cover / "world.db").unlink(missing_ok=True)
    write_jsonl_gz(files.world, labelled)
    record = cover_record(files, plan, results, held, complete)
    before = manifest.get("cover", {}).get("tally", {"planned": 0, "attempted": 0, "failed": 0})
    now = record["tally"] if record else {"planned": 0, "attempted": 0, "failed": 0}
    c = manifest["counts"]
    collapsed0 = sum(1 for r in results0.values() if "error" in r)
    tally = Tally(c["planned"] - before["planned"] + now["planned"],
                  c["attempted"] - before["attempted"] + now["attempted"],
                  c["oracle_failures"] - before["failed"] + now["failed"] + collapsed0)
    write_manifest(files, labelled, world_systems(), sorted(held), tally,
                   grown_waves=manifest.get("grown_waves"), cover=record,
                   anions=spec.anions)
    log.info("cover: the world now holds %d structures (%d of the cover)", len(labelled),
             sum(1 for r in labelled if r.get("wave") == COVER_WAVE))
