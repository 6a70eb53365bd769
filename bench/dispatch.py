"""Dispatch benchmark: what gnomon's orchestration costs on top of plain sbatch, and how fast
finished task documents are ingested.

    .venv/bin/python bench/dispatch.py [--n 8] [--ingest 300] [--poll 0.5]

1. SLURM overhead (needs a reachable SLURM, e.g. infra/slurm/start.sh): N relaxations with
   a cheap real payload (ASE's EMT potential, engine ``emt``: milliseconds of physics, no
   neural network) run (a) as N plain ``sbatch`` scripts running the same worker command,
   polled with squeue until gone, and (b) through gnomon (submit + track + collect + ingest
   into the hull). Overhead per relaxation is (b - a) / N, with the submit and ingest parts
   shown separately.
2. Ingest throughput: M finished task documents on disk (random cells of EMT's elements)
   collected by the service (parse, validate, ingest, hull recompute, state updates).

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pymatgen.core import Lattice, Structure
from rich.console import Console
from rich.table import Table

from gnomon.dft import worker as files
from gnomon.dft.dispatcher import BatchState, BatchStatus, Dispatcher, shell_command
from gnomon.dft.errors import DispatchError
from gnomon.dft.forcefield import EMTEngine
from gnomon.dft.service import Relaxations
from gnomon.dft.settings import SlurmSettings
from gnomon.dft.slurm import SlurmDispatcher
from gnomon.dft.task import TaskDocument
from gnomon.storage import open_repository
from gnomon.storage.documents import CalcState

console = Console()

#: Systems of EMT's elements (it has parameters for Al, Ni, Cu, Pd, Ag, Pt, Au, H, C, N, O).
SYSTEMS = [("Cu", "Ni", "O"), ("Ag", "Au", "C"), ("Al", "Pd", "N"), ("Pt", "Cu", "H")]


def payload_engine() -> EMTEngine:
    """The relaxation every benchmarked job runs: EMT, a bounded number of steps."""
    return EMTEngine(fmax=0.1, steps=20)


def structures(n: int, seed: int = 0) -> list[Structure]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        els = SYSTEMS[i % len(SYSTEMS)]
        k = rng.randint(1, 4)
        species = [rng.choice(els) for _ in range(k)]
        a = 3.0 + 0.8 * k ** (1 / 3) + rng.random()
        coords = [[rng.random(), rng.random(), rng.random()] for _ in range(k)]
        s = Structure(Lattice.cubic(a), species, coords)
        if s.is_ordered and (k == 1 or min(s.distance_matrix[s.distance_matrix > 0]) > 1.2):
            out.append(s)
        else:
            out.append(Structure(Lattice.cubic(a), species[:1], [[0, 0, 0]]))
    return out


def plain_sbatch(workdirs: list[Path], batch_dir: Path, poll: float) -> tuple[float, float]:
    """(wall time until all jobs left the queue, time spent in sbatch/squeue calls)."""
    batch_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sleeping = 0.0
    ids = []
    for i, w in enumerate(workdirs):
        script = batch_dir / f"plain-{i}.sh"
        script.write_text(f"#!/bin/bash\n#SBATCH -o {batch_dir}/plain-{i}.out\n"
                          f"#SBATCH -t 00:10:00\n{shell_command([w])}\n")
        out = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True,
                             text=True, check=True)
        ids.append(out.stdout.strip().split(";")[0])
    while True:
        q = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)],
                           capture_output=True, text=True)
        if not set(q.stdout.split()) & set(ids):
            break
        time.sleep(poll)
        sleeping += poll
    wall = time.perf_counter() - start
    return wall, wall - sleeping


def plain_run(tmp: Path, structs: list[Structure], poll: float) -> tuple[float, float]:
    """(a): the worker's payload for each structure as plain sbatch jobs."""
    engine = payload_engine()
    plain_dirs = []
    for i, s in enumerate(structs):
        d = tmp / "plain" / f"c{i}"
        files.write_job(d, f"plain-{i}", engine.spec(), s.as_dict())
        plain_dirs.append(d)
    return plain_sbatch(plain_dirs, tmp / "plain" / "batches", poll)


def gnomon_run(tmp: Path, structs: list[Structure], disp: Dispatcher,
               poll: float) -> dict[str, float]:
    """(b): the same relaxations through gnomon, timing submit, every track and collect."""
    repo = open_repository(f"sqlite:///{tmp / 'bench.db'}")
    svc = Relaxations(repo, tmp / "runs", {disp.name: disp})
    spent = {"collect": 0.0, "track": 0.0}

    def timed(part: str, call):
        def run(*args, **kwargs):
            t = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - t
        return run

    t0 = time.perf_counter()
    svc.submit(structs, payload_engine(), disp.name)
    submit = time.perf_counter() - t0
    svc.collect = timed("collect", svc.collect)
    svc.track = timed("track", svc.track)
    svc.wait(poll_s=poll, timeout_s=900)
    wall = time.perf_counter() - t0
    done = repo.count("calculations", {"state": CalcState.done.value})
    repo.close()
    return {"submit": submit, "wall": wall, "done": done, **spent}


def slurm_overhead(n: int, poll: float) -> list[tuple[str, str]]:
    disp = SlurmDispatcher(SlurmSettings())
    try:
        disp.check()
    except DispatchError as exc:
        return [("SLURM overhead", f"skipped: {exc}")]
    tmp = Path(tempfile.mkdtemp(prefix="gnomon-bench-"))
    try:
        structs = structures(n, seed=1)
        t_plain, active_plain = plain_run(tmp, structs, poll)
        g = gnomon_run(tmp, structs, disp, poll)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t_submit, ingest_s = g["submit"], g["collect"]
    active_gnomon = t_submit + g["track"]
    per = (active_gnomon - active_plain) / n
    return [
        ("relaxations (EMT payload, 1 job each)", f"{n} ({g['done']:.0f} done)"),
        ("plain sbatch + squeue until gone", f"{t_plain:.2f} s"),
        ("gnomon submit + track + collect + ingest", f"{g['wall']:.2f} s"),
        ("  of which submit (checks, records, sbatch)",
         f"{t_submit:.2f} s = {t_submit / n * 1000:.0f} ms/relaxation"),
        ("  of which collect + ingest",
         f"{ingest_s:.2f} s = {ingest_s / n * 1000:.0f} ms/relaxation"),
        ("  time in calls, plain (sbatch + squeue)", f"{active_plain:.2f} s"),
        ("  time in calls, gnomon (submit + every track)", f"{active_gnomon:.2f} s"),
        ("orchestration overhead per relaxation (calls)", f"{per * 1000:.0f} ms"),
        ("wall-clock difference per relaxation",
         f"{(g['wall'] - t_plain) / n * 1000:.0f} ms (noise: payload start-up)"),
    ]


class _Finished(Dispatcher):
    """Every batch has already finished (the results are on disk)."""

    name = "done"

    def check(self) -> None: ...

    def submit(self, workdirs, label, batch_dir) -> str:
        return label

    def poll(self, batch_ids):
        return {b: BatchStatus(BatchState.finished, "bench") for b in batch_ids}

    def cancel(self, batch_id) -> None: ...


def finished_task(engine: EMTEngine, structure: Structure, energy: float) -> TaskDocument:
    """The task document a worker would have written, without running the relaxation."""
    return TaskDocument(engine=engine.name, scheme=engine.scheme, code="ase",
                        settings_hash=engine.settings_hash,
                        inputs_hash=engine.inputs_hash(structure),
                        structure=structure.as_dict(), initial_structure=structure.as_dict(),
                        energy=energy, converged=True)


def ingest_throughput(m: int) -> list[tuple[str, str]]:
    tmp = Path(tempfile.mkdtemp(prefix="gnomon-bench-ingest-"))
    try:
        repo = open_repository(f"sqlite:///{tmp / 'bench.db'}")
        svc = Relaxations(repo, tmp / "runs", {"done": _Finished()}, pack=m)
        engine = payload_engine()
        structs = structures(m, seed=2)
        svc.submit(structs, engine, "done", dispatch=False)
        calcs = repo.calculations()
        for c, s in zip(calcs, structs, strict=False):
            doc = finished_task(engine, s, energy=-len(s) * random.uniform(3, 6))
            files.write_atomic(Path(c.workdir) / files.RESULT, doc.model_dump_json())
        svc.dispatch()  # all into one "batch"
        t0 = time.perf_counter()
        report = svc.track(dispatch=False)
        dt = time.perf_counter() - t0
        n_calcs = len(calcs)
        n_phases = repo.count("phases")
        repo.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [
        ("finished task documents collected", f"{len(report.done)} of {n_calcs} "
         f"({len(report.failed)} rejected by entry validation)"),
        ("collect + validate + ingest + hull + states", f"{dt:.2f} s"),
        ("ingest throughput", f"{len(report.done) / dt:.0f} task documents/s"),
        ("phases written", str(n_phases)),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8, help="relaxations through SLURM")
    p.add_argument("--ingest", type=int, default=300, help="task documents to ingest")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between polls (both sides)")
    p.add_argument("--skip-slurm", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("GNOMON_LOG_LEVEL", "WARNING")
    table = Table(title="gnomon dispatch benchmark")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [] if args.skip_slurm else slurm_overhead(args.n, args.poll)
    rows += ingest_throughput(args.ingest)
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    console.print(f"[dim]cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, "
                  f"SLURM_CONF={os.environ.get('SLURM_CONF', '(default)')}[/]")


if __name__ == "__main__":
    main()
