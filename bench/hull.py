"""Hull engine benchmark: incremental updates vs full rebuilds vs pymatgen's PatchedPhaseDiagram.

    .venv/bin/python bench/hull.py                   # 10^5 entries, batches of 10^3
    .venv/bin/python bench/hull.py --entries 20000   # quicker
    nice -n 10 .venv/bin/python bench/hull.py --entries 1000000 --trials 1 --repeats 1

Synthetic entries over many chemical systems of up to five elements are stored in SQLite;
every hull is rebuilt from scratch, batches of new entries are ingested (the incremental
path), and pymatgen's PatchedPhaseDiagram is built over the same entries, all in this run.
Three kinds of batch: a campaign round (new results inside one ternary chemical space, which is
what a `gnomon campaign` round over its `chemsys` produces), a batch spread over three ternary
spaces, and a scattered batch (new results over random systems, the worst case).

Each of ``--trials`` trials rebuilds every hull on a fresh copy of the entries and then ingests
each campaign batch ``--repeats`` times into fresh copies of what it built; a trial's ratio is
its rebuild time over its best ingest, and the table gives the median ratio over trials, the
best times, and every trial. The scattered batch is ingested once, after the last trial.

Every operation is timed twice: wall time and CPU time of this process (``time.process_time``,
which on a machine shared with other work is the steadier of the two; ratios are given in
both). The peak resident memory of each operation is the high-water mark reset before it
(``/proc/self/clear_refs``). Entries are generated and stored a batch at a time, so the bench
itself never holds them all. PatchedPhaseDiagram runs in a child process with a CPU-time and
an address-space limit (``--ppd-cpu``, ``--ppd-memory-gb``); where it runs out of either, the
table says which and at what stage it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from itertools import combinations
from math import comb
from pathlib import Path

from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry
from rich.console import Console
from rich.table import Table

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import open_repository

ELEMENTS = [
    "Li",
    "Na",
    "K",
    "Mg",
    "Ca",
    "Sr",
    "Ba",
    "Ti",
    "V",
    "Cr",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Cu",
    "Zn",
    "Al",
    "Ga",
    "Si",
    "Ge",
    "Sn",
    "P",
    "Sb",
    "Bi",
    "O",
    "S",
    "Se",
    "F",
    "Cl",
    "Br",
]
SCHEME = "bench"


def chemical_systems(rng: random.Random, n_systems: int) -> list[tuple[str, ...]]:
    shares = {2: 0.4, 3: 0.35, 4: 0.18, 5: 0.07}
    systems: set[tuple[str, ...]] = set()
    for k, share in shares.items():
        # never ask for more k-element systems than there are (30 choose 2 is only 435)
        target = len(systems) + min(int(n_systems * share), comb(len(ELEMENTS), k) // 2)
        while len(systems) < target:
            systems.add(tuple(sorted(rng.sample(ELEMENTS, k))))
    return sorted(systems)


def random_entry(rng: random.Random, system: tuple[str, ...], refs: dict[str, float], tag: str):
    comp = Composition({el: rng.randint(1, 4) for el in system})
    ref = sum(refs[str(el)] * amt for el, amt in comp.items())
    e_form = rng.gauss(-0.4, 0.5) * comp.num_atoms
    return make_entry(comp, ref + e_form, SCHEME, source=tag)


def peak_reset() -> None:
    """Reset this process's resident-memory high-water mark (Linux; a no-op elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_gb() -> float:
    """This process's resident-memory high-water mark since the last reset, in GB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


@dataclass
class Timed:
    """One timed operation: wall and CPU seconds, the background checkpoint that followed it,
    the peak resident memory during it, and what it returned."""

    wall: float
    cpu: float
    flush: float
    peak: float
    result: object


def timed_write(source: Path, target: Path, write) -> Timed:
    """Copy ``source`` to ``target``, time ``write(engine)`` on the copy, then time the wait for
    the background WAL checkpoint that follows (not part of the write: the caller goes on
    while it flushes, but it is shown).

    The copy is flushed to disk before the clock starts. Otherwise the write's first commit
    pays for it: SQLite syncs a new WAL file's header, and on ext4 (data=ordered) that sync
    waits for every dirty page of the just-copied database, 0.18 s for 137 MB here, which a
    database that was not copied a moment ago never pays.
    """
    shutil.copyfile(source, target)
    os.sync()
    repo = open_repository(f"sqlite:///{target}")
    peak_reset()
    t0, c0 = time.perf_counter(), time.process_time()
    result = write(HullEngine(repo))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = peak_gb()
    t0 = time.perf_counter()
    repo.checkpointer.stop()
    flush = time.perf_counter() - t0
    repo.close()
    return Timed(wall, cpu, flush, peak, result)


def ingest_time(base_db: Path, batch: list, trials: int) -> list[Timed]:
    """Ingests of ``batch`` into fresh copies of ``base_db``, one per trial."""
    out = []
    for k in range(trials):
        copy = base_db.with_name(f"trial-{k}.db")
        out.append(timed_write(base_db, copy, lambda engine: engine.ingest(batch)))
        for path in copy.parent.glob(f"{copy.name}*"):
            path.unlink()
    return out


def store_entries(repo, rng, systems, refs, n: int, batch: int) -> tuple[float, float]:
    """Store the elemental references and ``n`` random entries a batch at a time (never all
    in memory); wall and CPU seconds spent storing (not making) them."""
    wall = cpu = 0.0
    made = 0
    while made < n:
        if made == 0:
            chunk = [make_entry(el, refs[el], SCHEME, source="ref") for el in ELEMENTS]
        else:
            chunk = []
        chunk += [
            random_entry(rng, rng.choice(systems), refs, f"b{made + k}")
            for k in range(min(batch, n - made) - len(chunk))
        ]
        t0, c0 = time.perf_counter(), time.process_time()
        repo.insert_new("entries", chunk)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        made += len(chunk)
    return wall, cpu


def ppd_child(db: str, probe_file: str) -> None:
    """In a child process: PatchedPhaseDiagram over every stored entry, then e_above_hull of
    the probe entries, each stage announced on stdout (so the parent knows where a limit
    stopped it)."""

    def say(stage: str, **extra) -> None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(
            json.dumps({"stage": stage, "cpu": time.process_time(), "rss_gb": rss, **extra}),
            flush=True,
        )

    say("started")
    repo = open_repository(f"sqlite:///{db}")
    pool = [
        ComputedEntry(Composition(d["composition"]), d["energy"], entry_id=d["id"])
        for d in repo.find("entries", {"scheme": SCHEME})
    ]
    repo.close()
    say("entries read", n=len(pool))
    t0, c0 = time.perf_counter(), time.process_time()
    ppd = PatchedPhaseDiagram(pool, keep_all_spaces=False)
    say(
        "built",
        wall=time.perf_counter() - t0,
        build_cpu=time.process_time() - c0,
        patches=len(ppd.pds),
    )
    probe = [ComputedEntry(Composition(c), e) for c, e in json.loads(Path(probe_file).read_text())]
    t0, c0 = time.perf_counter(), time.process_time()
    for e in probe:
        ppd.get_e_above_hull(e, allow_negative=True)
    say("probed", wall=time.perf_counter() - t0, probe_cpu=time.process_time() - c0)


def run_ppd(db: Path, probe: list, cpu_limit: int, memory_gb: float) -> list[dict]:
    """PatchedPhaseDiagram in a child with RLIMIT_CPU and RLIMIT_AS; its stage reports, and a
    last one saying why it stopped if it did not finish."""
    probe_file = db.with_name("probe.json")
    probe_file.write_text(json.dumps([[e.composition, e.energy] for e in probe]))

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_limit, cpu_limit + 5))
        limit = int(memory_gb * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run(
        [sys.executable, __file__, "--ppd-child", str(db), str(probe_file)],
        capture_output=True,
        text=True,
        preexec_fn=limits,
        check=False,
    )
    stages = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        why = {
            -signal.SIGXCPU: f"CPU limit of {cpu_limit} s reached",
            -signal.SIGKILL: f"killed (CPU limit of {cpu_limit} s or memory)",
        }.get(proc.returncode)
        if why is None:
            tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
            why = (
                f"out of memory (address-space limit {memory_gb:g} GB)"
                if "MemoryError" in proc.stderr
                else f"exit {proc.returncode}: {tail[0][:120]}"
            )
        stages.append({"stage": "stopped", "why": why})
    return stages


def _times(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--per-system", type=int, default=30, help="entries per chemical system")
    ap.add_argument("--trials", type=int, default=3, help="rebuilds, each followed by its ingests")
    ap.add_argument(
        "--repeats", type=int, default=2, help="ingests of each batch per trial (best is kept)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ppd-cpu", type=int, default=900, help="CPU seconds PatchedPhaseDiagram gets")
    ap.add_argument("--ppd-memory-gb", type=float, default=8.0, help="its address-space limit")
    ap.add_argument("--no-ppd", action="store_true", help="skip PatchedPhaseDiagram")
    ap.add_argument("--ppd-child", nargs=2, metavar=("DB", "PROBE"), help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = _args()
    if args.ppd_child:
        ppd_child(*args.ppd_child)
        return
    rng = random.Random(args.seed)
    refs = {el: rng.uniform(-8, -1) for el in ELEMENTS}
    systems = chemical_systems(rng, max(10, args.entries // args.per_system))
    print(
        f"{args.entries:,} synthetic entries over {len(systems)} chemical systems "
        f"(+{len(ELEMENTS)} elemental references); {args.trials} trials, each a rebuild and "
        f"{args.repeats} ingests of each campaign batch; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="gnomon-bench-hull-"))
    rows: list[tuple[str, str, str, str, str]] = []

    def note(what: str, wall: str, cpu: str, peak: str, notes: str) -> None:
        rows.append((what, wall, cpu, peak, notes))
        print(" | ".join(rows[-1]), flush=True)

    # 1. raw import throughput (entries stored, no hull), in batches
    raw_db = workdir / "raw.db"
    repo = open_repository(f"sqlite:///{raw_db}")
    peak_reset()
    wall, cpu = store_entries(repo, rng, systems, refs, args.entries, args.batch)
    repo.close()
    note(
        "import into SQLite (no hull)",
        f"{wall:.1f} s",
        f"{cpu:.1f} s",
        f"{peak_gb():.2f} GB",
        f"{args.entries / wall:,.0f} entries/s wall, {args.entries / cpu:,.0f} /s CPU "
        "(making the records not counted)",
    )
    kinds = campaign_batches(rng, systems, refs, args.batch)
    base_db = workdir / "base.db"
    rebuilds, ingests = run_trials(raw_db, base_db, kinds, args.trials, args.repeats)
    report_trials(note, rebuilds, ingests, args.repeats)
    batch = [random_entry(rng, rng.choice(systems), refs, f"s{i}") for i in range(args.batch)]
    (scattered,) = ingest_time(base_db, batch, 1)
    rep = scattered.result
    note(
        "incremental: scattered batch: random systems",
        f"{scattered.wall:.2f} s",
        f"{scattered.cpu:.2f} s",
        f"{scattered.peak:.2f} GB",
        f"{len(rep.recomputed[SCHEME])} systems recomputed, "
        f"{rep.phases_written:,} phases rewritten; {rebuilds[-1].wall / scattered.wall:,.1f}x "
        f"(wall) / {rebuilds[-1].cpu / scattered.cpu:,.1f}x (CPU) faster than the last "
        f"rebuild; one trial; background checkpoint after it {scattered.flush:.2f} s",
    )
    if not args.no_ppd:
        report_ppd(note, run_ppd(base_db, kinds[0][1], args.ppd_cpu, args.ppd_memory_gb), args)
    print_table(rows, args)
    shutil.rmtree(workdir, ignore_errors=True)


def campaign_batches(rng, systems, refs, size: int) -> list[tuple[str, list]]:
    """A campaign round in one ternary space and a batch over three (compounds only: a new
    elemental reference moves every hull holding that element)."""
    ternaries = [s for s in systems if len(s) == 3]
    one = [tuple(c) for k in (2, 3) for c in combinations(ternaries[0], k)]
    three = [tuple(c) for s in ternaries[:3] for k in (2, 3) for c in combinations(s, k)]
    return [
        (
            "campaign round: one ternary space",
            [random_entry(rng, rng.choice(one), refs, f"cam{i}") for i in range(size)],
        ),
        (
            "campaign batch: three ternary spaces",
            [random_entry(rng, rng.choice(three), refs, f"cam{i}") for i in range(size)],
        ),
    ]


def run_trials(raw_db: Path, base_db: Path, kinds, trials: int, repeats: int):
    """Full rebuilds paired with incremental ingests. Each trial rebuilds every hull on a
    fresh copy of the entries, then ingests each campaign batch into fresh copies of what it
    just built. This VM's speed drifts by 30-50 % over tens of seconds, so a ratio of two
    timings taken a minute apart measures the drift as much as the code; each trial's ratio
    pairs a rebuild with the ingests run right after it, and the median over trials is the
    reported ratio."""
    rebuilds: list[Timed] = []
    ingests: dict[str, list[list[Timed]]] = {label: [] for label, _ in kinds}
    for _ in range(trials):
        rebuilds.append(timed_write(raw_db, base_db, lambda engine: engine.rebuild(SCHEME)))
        for label, batch in kinds:
            ingests[label].append(ingest_time(base_db, batch, repeats))
    return rebuilds, ingests


def report_trials(note, rebuilds: list[Timed], ingests, repeats: int) -> None:
    full = min(rebuilds, key=lambda t: t.wall)
    note(
        "full rebuild: every hull",
        f"{full.wall:.2f} s",
        f"{full.cpu:.2f} s",
        f"{max(t.peak for t in rebuilds):.2f} GB",
        f"{len(full.result.recomputed[SCHEME])} systems, {full.result.phases_written:,} phases; "
        f"trials {_times([t.wall for t in rebuilds])} s wall, "
        f"{_times([t.cpu for t in rebuilds])} s CPU; "
        f"background checkpoint after it {max(t.flush for t in rebuilds):.2f} s",
    )
    for label, per_trial in ingests.items():
        best = [min(ts, key=lambda t: t.wall) for ts in per_trial]
        ratio_wall = [r.wall / b.wall for r, b in zip(rebuilds, best, strict=True)]
        ratio_cpu = [
            r.cpu / min(t.cpu for t in ts) for r, ts in zip(rebuilds, per_trial, strict=True)
        ]
        rep = best[-1].result
        note(
            f"incremental: {label}",
            f"{min(b.wall for b in best):.2f} s",
            f"{min(min(t.cpu for t in ts) for ts in per_trial):.2f} s",
            f"{max(t.peak for ts in per_trial for t in ts):.2f} GB",
            f"{len(rep.recomputed[SCHEME])} systems recomputed, "
            f"{rep.phases_written:,} phases rewritten; "
            f"{statistics.median(ratio_wall):,.1f}x (wall) / "
            f"{statistics.median(ratio_cpu):,.1f}x (CPU) faster than the rebuild of its trial "
            f"(median; trials {', '.join(f'{x:.1f}x' for x in ratio_wall)} wall); each the "
            f"best of {repeats}; background checkpoint after it "
            f"{max(t.flush for ts in per_trial for t in ts):.2f} s",
        )


def report_ppd(note, stages: list[dict], args) -> None:
    last = stages[-1] if stages else {"stage": "stopped", "why": "no output"}
    built = next((s for s in stages if s["stage"] == "built"), None)
    rss = max((s.get("rss_gb", 0.0) for s in stages), default=0.0)
    if built is not None:
        note(
            "pymatgen PatchedPhaseDiagram build",
            f"{built['wall']:.1f} s",
            f"{built['build_cpu']:.1f} s",
            f"{rss:.2f} GB",
            f"{built['patches']} patches (child process; limits {args.ppd_cpu} s CPU, "
            f"{args.ppd_memory_gb:g} GB)",
        )
    probed = next((s for s in stages if s["stage"] == "probed"), None)
    if probed is not None:
        note(
            "  + e_above_hull of the campaign round",
            f"{probed['wall']:.2f} s",
            f"{probed['probe_cpu']:.2f} s",
            "",
            "(existing hull only: no decomposition energies, nothing stored)",
        )
    if last["stage"] == "stopped":
        reached = [s for s in stages if s["stage"] != "stopped"]
        where = reached[-1] if reached else {"stage": "start", "cpu": 0.0}
        note(
            "pymatgen PatchedPhaseDiagram build",
            "did not finish",
            f"> {where.get('cpu', 0.0):.0f} s",
            f">= {rss:.2f} GB",
            f"stopped: {last['why']}; last stage reached: '{where['stage']}' at "
            f"{where.get('cpu', 0.0):.0f} s CPU"
            + (
                f" ({where['n']:,} entries), then building the diagram"
                if where["stage"] == "entries read"
                else ""
            ),
        )


def print_table(rows, args) -> None:
    table = Table(
        title=f"bench/hull.py: {args.entries:,} entries, batches of {args.batch:,} "
        f"(SQLite, 1 process, {args.trials} trials; {time.strftime('%Y-%m-%d')})"
    )
    for name, justify in (
        ("operation", "left"),
        ("wall", "right"),
        ("CPU", "right"),
        ("peak RSS", "right"),
        ("notes", "left"),
    ):
        table.add_column(name, justify=justify)
    for r in rows:
        table.add_row(*r)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
