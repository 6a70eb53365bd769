"""Building a world: plan, relax and label the elements and waves 1 and 2 (resumable).

Work goes to ``<world>/work`` (not shipped): the plan of each wave, then one JSON line per
relaxation appended by each worker, so a stopped build restarts where it was and redoes
nothing. A build ends by writing ``world.jsonl.gz``, ``heldout.json`` and ``manifest.json``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pymatgen.core import Structure

from gnomon.world.files import WorldFiles, cached_plan, write_jsonl_gz
from gnomon.world.label import judged, label
from gnomon.world.manifest import Tally, write_manifest
from gnomon.world.oracle import relax_all, results_done
from gnomon.world.plan import Planned, plan_wave1_all, plan_wave2
from gnomon.world.systems import HELDOUT_FRACTION, SEED, heldout_systems, world_systems

log = logging.getLogger(__name__)

NEAR_HULL = 0.05  # eV/atom: wave-1 phases used as "known compound" templates


def _known_compounds(files: WorldFiles, plan1: list[dict[str, Any]],
                     results: dict[str, dict[str, Any]]) -> list[tuple[str, Structure]]:
    """Wave 1's small phases within NEAR_HULL of their hull: wave 2's templates."""
    rows = label(plan1, results, files.work / "wave1.db")
    known = [(r["id"], Structure.from_dict(r["relaxed"])) for r in rows
             if r["e_above_hull"] is not None and r["e_above_hull"] <= NEAR_HULL
             and r["generator"] != "element" and r["nsites"] <= 12]
    log.info("wave 2: %d known compounds as templates", len(known))
    return known


def build(files: WorldFiles, workers: int, n_saps: int, n_random: int, n_known: int,
          deadlines: tuple[float | None, float | None] = (None, None)) -> None:
    """Plan, relax and label both waves; with deadlines, each wave's relaxation stops at its
    deadline and the world is written from what was relaxed (the manifest says how much)."""
    files.work.mkdir(parents=True, exist_ok=True)
    systems = world_systems()
    plan1 = [{**p, "wave": 1} for p in cached_plan(
        files.work / "wave1.jsonl.gz", lambda: plan_wave1_all(systems, n_saps, n_random, workers))]
    relax_all(plan1, files.work, workers, deadline=deadlines[0])
    results = judged(results_done(files.work))

    def make_wave2() -> list[Planned]:
        return plan_wave2(systems, _known_compounds(files, plan1, results), n_known)

    plan2 = [{**p, "wave": 2} for p in cached_plan(files.work / "wave2.jsonl.gz", make_wave2)]
    relax_all(plan2, files.work, workers, deadline=deadlines[1])
    results = judged(results_done(files.work))
    rows = label(plan1 + plan2, results, files.work / "world.db")
    failures = [r for r in results.values() if "error" in r]
    write_jsonl_gz(files.world, rows)
    held = heldout_systems(systems)
    files.heldout.write_text(json.dumps({"seed": SEED + 1, "fraction": HELDOUT_FRACTION,
                                         "systems": held}, indent=1) + "\n")
    attempted = sum(1 for p in plan1 + plan2 if p["id"] in results)
    write_manifest(files, rows, systems, held,
                   Tally(len(plan1) + len(plan2), attempted, len(failures)))
