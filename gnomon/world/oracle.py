"""The world's oracle: the CHGNet engine's settings, one calculator per worker process.

The unrelaxed input is kept beside the relaxed structure. A relaxation that diverges is a
failure recorded with its reason; so is an input refused before the oracle
(:func:`oracle_input`). Each worker appends one JSON line per result to its own file, so a
stopped run restarts where it was and relaxes nothing twice.
"""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing as mp
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from gnomon.dft.collapse import COLLAPSED_FRACTION
from gnomon.dft.forcefield import CHGNetEngine
from gnomon.dft.mlip_batch import BatchRelaxer, BatchResult
from gnomon.pipeline.generation.random_search import estimate_volume_per_atom

log = logging.getLogger(__name__)

SCHEME = "mlip-chgnet-0.3.0"
ORACLE_SETTINGS = {"fmax": 0.1, "steps": 150}  # examples/quickstart.yaml's engine options
INPUT_RULE = 3  # results of older rules that failed are relaxed again under this one
DENSEST = 0.5  # of the radii volume estimate: denser inputs are refused before the oracle


def oracle_input(structure: Structure) -> tuple[Structure, str | None]:
    """The structure the oracle starts from, or the reason it is refused.

    Substituted prototypes inherit their template's density (high-pressure H3S, diamond C):
    a tenth of them are denser than half the radii estimate (itself the dense packing target of
    random search). Such a cell makes CHGNet's neighbour and angle lists explode and FIRE
    spends its steps only expanding it, so the oracle refuses it up front, with the reason.
    """
    if len(structure.composition) == 1:  # elemental references: ASE's measured cells
        return structure, None
    estimate = estimate_volume_per_atom(structure.composition)
    per_atom = structure.volume / len(structure)
    if per_atom < DENSEST * estimate:
        return structure, (f"input refused: {per_atom:.2f} Å^3/atom is under {DENSEST} of the "
                           f"radii estimate {estimate:.2f}")
    return structure, None


def _record(key: str, result: BatchResult | str) -> dict[str, Any]:
    if isinstance(result, BatchResult):
        rec = {"id": key, "structure": result.structure.as_dict(), "energy": result.energy,
               "initial_energy": result.initial_energy, "steps": result.steps,
               "converged": result.converged,
               "frames": [frame.to_doc() for frame in result.frames]}
    else:
        rec = {"id": key, "error": result}
    rec["input_rule"] = INPUT_RULE
    return rec


def oracle_engine() -> CHGNetEngine:
    """The engine the world's labels come from (its scheme is :data:`SCHEME`): what a single
    point in the world's own scheme is computed with."""
    return CHGNetEngine(**ORACLE_SETTINGS)


def relax_shard(todo: list[dict[str, Any]], out: Path, batch_size: int) -> None:
    """Relax ``todo`` with the CHGNet engine's settings, appending one JSON line per result."""
    import torch  # heavy: torch, only in the oracle's worker processes

    warnings.simplefilter("ignore")  # CHGNet's tensor-copy notice, once per process
    torch.set_num_threads(1)
    relaxer = BatchRelaxer(oracle_engine(), batch_size=batch_size)
    inputs = {p["id"]: oracle_input(Structure.from_dict(p["structure"])) for p in todo}
    items = ((key, s) for key, (s, refused) in inputs.items() if refused is None)
    t0, n = time.time(), 0
    with out.open("a") as fh:
        for key, (_, refused) in inputs.items():
            if refused is not None:
                fh.write(json.dumps({"id": key, "error": refused, "input_rule": INPUT_RULE}) + "\n")
        for key, result in relaxer.relax(items):
            fh.write(json.dumps(_record(key, result)) + "\n")
            fh.flush()
            n += 1
            if n % 100 == 0:
                rate = n / (time.time() - t0)
                log.info("oracle %s: %d/%d (%.2f/s, %.0f min left)", out.stem, n, len(todo),
                         rate, (len(todo) - n) / rate / 60)


def results_done(work: Path) -> dict[str, dict[str, Any]]:
    """Every result the workers wrote under ``work``; failures of older input rules are left
    out (they are relaxed again), and so is a line cut by a kill."""
    done: dict[str, dict[str, Any]] = {}
    for path in sorted([*work.glob("relaxed-*.jsonl"), *work.glob("relaxed-*.jsonl.gz")]):
        with (gzip.open(path, "rt") if path.suffix == ".gz" else path.open()) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: relaxed again
                    continue
                if "error" in rec and rec.get("input_rule") != INPUT_RULE:
                    continue
                done[rec["id"]] = rec
    return done


def relax_all(plan: list[dict[str, Any]], work: Path, workers: int, batch_size: int = 48,
              deadline: float | None = None) -> None:
    """Relax what the plan holds and no result file does yet; ``workers`` processes.

    At ``deadline`` (epoch seconds) the workers are stopped: every finished result is already
    on disk, and a later run picks up the rest.
    """
    done = results_done(work)
    todo = [p for p in plan if p["id"] not in done]
    log.info("oracle: %d planned, %d done, %d to relax on %d workers", len(plan), len(done),
             len(todo), workers)
    if not todo:
        return
    # big cells last, so that the batches stay even
    todo.sort(key=lambda p: len(p["structure"]["sites"]))
    stamp = time.strftime("%Y%m%d%H%M%S")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=relax_shard,
                         args=(todo[i::workers], work / f"relaxed-{stamp}-{i}.jsonl", batch_size))
             for i in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(None if deadline is None else max(1.0, deadline - time.time()))
    if any(p.is_alive() for p in procs):
        log.info("oracle: deadline reached, stopping the workers (the rest stays to do)")
        for p in procs:
            p.terminate()
            p.join()
        return
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"oracle workers failed with exit codes {bad}; run again to resume")


def oracle_description() -> dict[str, Any]:
    """What labelled the world, for its manifest."""
    return {"engine": "mlip (gnomon.dft.forcefield.CHGNetEngine settings)",
            "model": "CHGNet 0.3.0",
            "chgnet": version("chgnet"), "torch": version("torch"),
            "scheme": SCHEME, **ORACLE_SETTINGS, "optimizer": "FIRE",
            "cell_filter": "FrechetCellFilter", "input_rule": INPUT_RULE,
            "collapsed_below": f"{COLLAPSED_FRACTION} of a pair's covalent radii sum "
                               "(gnomon.dft.collapse): a failure"}
