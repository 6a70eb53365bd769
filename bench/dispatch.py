"""Dispatch benchmark: what gnomon's orchestration costs on top of plain sbatch, and how fast
finished task documents are ingested.

    .venv/bin/python bench/dispatch.py [--n 8] [--ingest 300] [--poll 0.5]

1. SLURM overhead (needs a reachable SLURM, e.g. infra/slurm/start.sh): N relaxations with
   a trivial payload (the test suite's fake engine, no physics) run (a) as N plain ``sbatch``
   scripts running the same worker command, polled with squeue until gone, and (b) through
   gnomon (submit + track + collect + ingest into the hull). Overhead per relaxation is
   (b - a) / N, with the submit and ingest parts shown separately.
2. Ingest throughput: M finished task documents on disk (random Li-Fe-O / Na-Cl-O cells)
   collected by the service (parse, validate, ingest, hull recompute, state updates).

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "dft"
sys.path.insert(0, str(FAKE))

from gnomon_fake_engine import FakeEngine  # noqa: E402
from pymatgen.core import Lattice, Structure  # noqa: E402

from gnomon.dft import worker as files  # noqa: E402
from gnomon.dft.dispatcher import BatchState, BatchStatus, Dispatcher, shell_command  # noqa: E402
from gnomon.dft.errors import DispatchError  # noqa: E402
from gnomon.dft.service import Relaxations  # noqa: E402
from gnomon.dft.settings import SlurmSettings  # noqa: E402
from gnomon.dft.slurm import SlurmDispatcher  # noqa: E402
from gnomon.storage import open_repository  # noqa: E402
from gnomon.storage.documents import CalcState  # noqa: E402

console = Console()


def structures(n: int, seed: int = 0) -> list[Structure]:
    rng = random.Random(seed)
    systems = [("Li", "Fe", "O"), ("Na", "Cl", "O"), ("Mg", "Si", "O"), ("Ca", "Ti", "O")]
    out = []
    for i in range(n):
        els = systems[i % len(systems)]
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


def plain_sbatch(workdirs: list[Path], batch_dir: Path, env: dict[str, str], poll: float) -> tuple[float, float]:
    """(wall time until all jobs left the queue, time spent in sbatch/squeue calls)."""
    batch_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sleeping = 0.0
    ids = []
    for i, w in enumerate(workdirs):
        script = batch_dir / f"plain-{i}.sh"
        exports = "\n".join(f"export {k}={v}" for k, v in env.items())
        script.write_text(f"#!/bin/bash\n#SBATCH -o {batch_dir}/plain-{i}.out\n#SBATCH -t 00:10:00\n"
                          f"{exports}\n{shell_command([w])}\n")
        out = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True)
        ids.append(out.stdout.strip().split(";")[0])
    while True:
        q = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True)
        if not set(q.stdout.split()) & set(ids):
            break
        time.sleep(poll)
        sleeping += poll
    wall = time.perf_counter() - start
    return wall, wall - sleeping


def slurm_overhead(n: int, poll: float) -> list[tuple[str, str]]:
    disp = SlurmDispatcher(SlurmSettings(environment={"PYTHONPATH": str(FAKE)}))
    try:
        disp.check()
    except DispatchError as exc:
        return [("SLURM overhead", f"skipped: {exc}")]
    tmp = Path(tempfile.mkdtemp(prefix="gnomon-bench-"))
    try:
        engine = FakeEngine()
        structs = structures(n, seed=1)
        # (a) plain sbatch over the same worker payload
        plain_dirs = []
        for i, s in enumerate(structs):
            d = tmp / "plain" / f"c{i}"
            files.write_job(d, f"plain-{i}", engine.spec(), s.as_dict())
            plain_dirs.append(d)
        t_plain, active_plain = plain_sbatch(plain_dirs, tmp / "plain" / "batches", {"PYTHONPATH": str(FAKE)}, poll)
        # (b) gnomon: submit + track + collect + ingest
        repo = open_repository(f"sqlite:///{tmp / 'bench.db'}")
        svc = Relaxations(repo, tmp / "runs", {"slurm": disp})
        t0 = time.perf_counter()
        svc.submit(structs, engine, "slurm")
        t_submit = time.perf_counter() - t0
        ingest_s = 0.0
        original = svc.collect

        def timed_collect(calcs, report=None):
            nonlocal ingest_s
            t = time.perf_counter()
            out = original(calcs, report)
            ingest_s += time.perf_counter() - t
            return out

        svc.collect = timed_collect
        track_s = 0.0
        original_track = svc.track

        def timed_track(dispatch=True):
            nonlocal track_s
            t = time.perf_counter()
            out = original_track(dispatch)
            track_s += time.perf_counter() - t
            return out

        svc.track = timed_track
        svc.wait(poll_s=poll, timeout_s=900)
        t_gnomon = time.perf_counter() - t0
        done = repo.count("calculations", {"state": CalcState.done.value})
        repo.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    active_gnomon = t_submit + track_s
    per = (active_gnomon - active_plain) / n
    return [
        ("relaxations (trivial payload, 1 job each)", f"{n} ({done} done)"),
        ("plain sbatch + squeue until gone", f"{t_plain:.2f} s"),
        ("gnomon submit + track + collect + ingest", f"{t_gnomon:.2f} s"),
        ("  of which submit (checks, records, sbatch)", f"{t_submit:.2f} s = {t_submit / n * 1000:.0f} ms/relaxation"),
        ("  of which collect + ingest", f"{ingest_s:.2f} s = {ingest_s / n * 1000:.0f} ms/relaxation"),
        ("  time in calls, plain (sbatch + squeue)", f"{active_plain:.2f} s"),
        ("  time in calls, gnomon (submit + every track)", f"{active_gnomon:.2f} s"),
        ("orchestration overhead per relaxation (calls)", f"{per * 1000:.0f} ms"),
        ("wall-clock difference per relaxation", f"{(t_gnomon - t_plain) / n * 1000:.0f} ms (noise: payload start-up)"),
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


def ingest_throughput(m: int) -> list[tuple[str, str]]:
    tmp = Path(tempfile.mkdtemp(prefix="gnomon-bench-ingest-"))
    try:
        repo = open_repository(f"sqlite:///{tmp / 'bench.db'}")
        svc = Relaxations(repo, tmp / "runs", {"done": _Finished()}, pack=m)
        engine = FakeEngine()
        structs = structures(m, seed=2)
        svc.submit(structs, engine, "done", dispatch=False)
        calcs = repo.calculations()
        for c, s in zip(calcs, structs, strict=False):
            wd = Path(c.workdir)
            doc = engine.to_task_document(
                {"structure": s.as_dict(), "energy": -len(s) * random.uniform(3, 6)}, s, wd)
            files.write_atomic(wd / files.RESULT, doc.model_dump_json())
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
    import gnomon.dft.parsing  # noqa: F401 - imports out of the timings
    import gnomon.pipeline.thermo.entries  # noqa: F401
    import gnomon.pipeline.thermo.hull  # noqa: F401

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
