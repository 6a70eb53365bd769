"""Growing a world wave by wave (3, 4, ...), resumable across sessions.

Each wave is planned on the world the waves before it made (:mod:`gnomon.world.plan_grow`)
and relaxed whole before the world, its manifest (cumulative counts) and the next wave are
written; the systems and the hold-out stay as they are. A ``per_system`` above the last
wave's (``grow/waves.json``) plans one more. Plans and results live in ``<world>/grow``, so a
grow stopped in one session resumes in the next.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from gnomon.world.cover import cover_part, cover_record
from gnomon.world.files import WorldFiles, cached_plan, load_world, read_jsonl_gz, write_jsonl_gz
from gnomon.world.label import judged, label, rows_as_plan
from gnomon.world.manifest import Tally, write_manifest
from gnomon.world.oracle import relax_all, results_done
from gnomon.world.plan_cover import COVER_WAVE
from gnomon.world.plan_grow import plan_grow
from gnomon.world.systems import world_systems

log = logging.getLogger(__name__)


def _grow_base(files: WorldFiles) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The world as it was before the grow began (kept in the grow folder), and its manifest."""
    base, base_manifest = files.grow / "base.jsonl.gz", files.grow / "base-manifest.json"
    if base.exists():
        return list(read_jsonl_gz(base)), json.loads(base_manifest.read_text())
    rows, _ = load_world(files)
    rows = [r for r in rows if r.get("wave") != COVER_WAVE]  # the cover's come from cover/
    manifest = json.loads(files.manifest.read_text())
    cover = manifest.pop("cover", None)
    if cover:  # the base's counts without the cover's, which the grown world adds again
        for key, name in (("planned", "planned"), ("attempted", "attempted"),
                          ("oracle_failures", "failed")):
            manifest["counts"][key] -= cover["tally"][name]
    write_jsonl_gz(base, rows)
    base_manifest.write_text(json.dumps(manifest, indent=1) + "\n")
    return rows, manifest


def _read_waves(files: WorldFiles, per_system: int) -> dict[int, int]:
    waves = ({int(k): v for k, v in json.loads(files.waves.read_text()).items()}
             if files.waves.exists() else {})
    if not waves:
        waves = {3: per_system}
        files.waves.write_text(json.dumps(waves, indent=1) + "\n")
    return waves


def _plan_waves(files: WorldFiles, waves: dict[int, int], base_rows: list[dict[str, Any]],
                workers: int) -> list[dict[str, Any]]:
    """Every wave's plan, each structure once (the first wave that planned it wins)."""
    plan: list[dict[str, Any]] = []
    for n in sorted(waves):
        # a wave is planned on the world the waves before it made (written when they were
        # complete), so only the last one can still need planning
        wave_plan = cached_plan(files.grow / f"wave{n}.jsonl.gz", lambda n=n: plan_grow(
            n, waves[n], base_rows if n == 3 else load_world(files)[0], workers))
        # an input an earlier wave planned (one the oracle failed on) is neither relaxed
        # nor counted twice
        earlier = {p["id"] for p in plan}
        plan += [{**p, "wave": n} for p in wave_plan if p["id"] not in earlier]
    return plan


def grow(files: WorldFiles, workers: int, per_system: int, deadline: float | None = None,
         write_partial: bool = False) -> None:
    """Grow the world wave by wave (see the module docstring); resumable.

    ``write_partial`` writes the world from what is relaxed when the deadline stops a wave
    (the manifest says ``complete: false`` and how much of each wave is in), as ``build``
    does at its deadlines: a session that cannot wait for the biggest cells of a wave still
    ships what the oracle did. The rest stays planned; the grow that finishes the wave
    rewrites the world whole, and only then plans the next one."""
    files.grow.mkdir(parents=True, exist_ok=True)
    base_rows, base_manifest = _grow_base(files)
    held = files.heldout_systems()
    waves = _read_waves(files, per_system)
    while True:
        last = max(waves)
        plan = _plan_waves(files, waves, base_rows, workers)
        relax_all(plan, files.grow, workers, deadline=deadline)
        results = results_done(files.grow)
        left = sum(1 for p in plan if p["id"] not in results)
        if left and write_partial:
            _write_grown_world(files, base_rows, base_manifest, plan, results, held,
                               sorted(waves))
            log.info("grow: wave %d written partially: %d of %d planned structures relaxed, "
                     "%d to go (run grow again to resume)", last, len(plan) - left, len(plan),
                     left)
            return
        if left:
            # the shipped world, its manifest and the pretrained model trained on it stay as
            # they are until the whole wave is relaxed: a half-grown world is one nobody
            # trained on
            log.info("grow: %d of %d planned structures relaxed, %d to go; the world is "
                     "unchanged until wave %d is complete (run grow again to resume)",
                     len(plan) - left, len(plan), left, last)
            return
        _write_grown_world(files, base_rows, base_manifest, plan, results, held, sorted(waves))
        if per_system <= waves[last] or (deadline is not None and time.time() >= deadline):
            return
        waves[last + 1] = per_system
        files.waves.write_text(json.dumps(waves, indent=1) + "\n")


def _write_grown_world(files: WorldFiles, base_rows: list[dict[str, Any]],
                       base_manifest: dict[str, Any], plan: list[dict[str, Any]],
                       results: dict[str, dict[str, Any]], held: set[str],
                       waves: list[int]) -> None:
    """Label the base world, every grown wave and a cover's binaries together (one hull per
    system over all)."""
    plan0, results0 = rows_as_plan(base_rows)
    results0, results = judged(results0), judged(results)
    collapsed0 = sum(1 for r in results0.values() if "error" in r)  # base rows failed since
    cover_plan, cover_results = cover_part(files)
    rows = label(plan0 + plan + cover_plan, {**results0, **results, **cover_results},
                 files.grow / "world.db")
    (files.grow / "world.db").unlink(missing_ok=True)
    write_jsonl_gz(files.world, rows)
    c = base_manifest["counts"]
    attempted = [p for p in plan if p["id"] in results]
    failed = sum(1 for p in attempted if "error" in results[p["id"]])
    record = cover_record(files, cover_plan, cover_results, held)
    extra = record["tally"] if record else {"planned": 0, "attempted": 0, "failed": 0}
    tally = Tally(c["planned"] + len(plan) + extra["planned"],
                  c["attempted"] + len(attempted) + extra["attempted"],
                  c["oracle_failures"] + collapsed0 + failed + extra["failed"])
    write_manifest(files, rows, world_systems(), sorted(held), tally, grown_waves=waves,
                   cover=record)
    log.info("grow: the world now holds %d structures (waves %s)", len(rows), waves)
