"""Hull engine benchmark: incremental updates vs full rebuilds vs pymatgen's PatchedPhaseDiagram.

    .venv/bin/python bench/hull.py                 # 10^5 entries, batches of 10^3
    .venv/bin/python bench/hull.py --entries 20000 # quicker

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
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
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


def timed_write(source: Path, target: Path, write) -> tuple[float, float, object]:
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
    t0 = time.perf_counter()
    result = write(HullEngine(repo))
    elapsed = time.perf_counter() - t0
    t0 = time.perf_counter()
    repo.checkpointer.stop()
    flush = time.perf_counter() - t0
    repo.close()
    return elapsed, flush, result


def ingest_time(
    base_db: Path, batch: list, trials: int
) -> tuple[float, list[float], object, float]:
    """Best and all wall times of ingesting ``batch`` into fresh copies of ``base_db``, and the
    longest background checkpoint after one."""
    times, flushes, report = [], [], None
    for k in range(trials):
        copy = base_db.with_name(f"trial-{k}.db")
        elapsed, flush, report = timed_write(base_db, copy, lambda engine: engine.ingest(batch))
        times.append(elapsed)
        flushes.append(flush)
        for path in copy.parent.glob(f"{copy.name}*"):
            path.unlink()
    return min(times), times, report, max(flushes)


def main() -> None:
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
    args = ap.parse_args()
    console = Console()
    rng = random.Random(args.seed)
    refs = {el: rng.uniform(-8, -1) for el in ELEMENTS}
    systems = chemical_systems(rng, max(10, args.entries // args.per_system))
    base = [make_entry(el, refs[el], SCHEME, source="ref") for el in ELEMENTS]
    while len(base) < args.entries:
        base.append(random_entry(rng, rng.choice(systems), refs, f"b{len(base)}"))
    print(
        f"{len(base)} synthetic entries over {len(systems)} chemical systems "
        f"(+{len(ELEMENTS)} elemental references); {args.trials} trials, each a rebuild and "
        f"{args.repeats} ingests of each campaign batch",
        flush=True,
    )

    workdir = Path(tempfile.mkdtemp(prefix="gnomon-bench-hull-"))
    raw_db = workdir / "raw.db"
    repo = open_repository(f"sqlite:///{raw_db}")
    rows: list[tuple[str, str, str]] = []

    def note(row: tuple[str, str, str]) -> None:
        rows.append(row)
        print(" | ".join(row), flush=True)

    # 1. raw import throughput (entries stored, no hull), in batches
    t0 = time.perf_counter()
    for k in range(0, len(base), args.batch):
        repo.insert_new("entries", base[k : k + args.batch])
    t_import = time.perf_counter() - t0
    note(
        (
            "import into SQLite (no hull)",
            f"{t_import:.2f} s",
            f"{len(base) / t_import:,.0f} entries/s",
        )
    )
    repo.close()

    # 2.-3. full rebuilds paired with incremental ingests. Each trial rebuilds every hull on a
    # fresh copy of the entries, then ingests each campaign batch into fresh copies of what it
    # just built. This VM's speed drifts by 30-50 % over tens of seconds (thread CPU time drifts
    # with the wall time, so it is the host, not preemption), so a ratio of two timings taken
    # a minute apart measures the drift as much as the code; each trial's ratio pairs a rebuild
    # with the ingests run right after it, and the median over trials is the reported ratio.
    ternaries = [s for s in systems if len(s) == 3]
    # compounds only: a new elemental reference moves every hull holding that element
    one = [tuple(c) for k in (2, 3) for c in combinations(ternaries[0], k)]
    three = [tuple(c) for s in ternaries[:3] for k in (2, 3) for c in combinations(s, k)]
    kinds = [
        (
            "campaign round: one ternary space",
            [random_entry(rng, rng.choice(one), refs, f"cam{i}") for i in range(args.batch)],
        ),
        (
            "campaign batch: three ternary spaces",
            [random_entry(rng, rng.choice(three), refs, f"cam{i}") for i in range(args.batch)],
        ),
    ]
    campaign = kinds[0][1]
    base_db = workdir / "base.db"
    rebuilds: list[float] = []
    ingests: dict[str, list[float]] = {label: [] for label, _ in kinds}
    ratios: dict[str, list[float]] = {label: [] for label, _ in kinds}
    reports: dict[str, object] = {}
    flushes: dict[str, float] = {label: 0.0 for label, _ in kinds}
    for _ in range(args.trials):
        elapsed, rebuild_flush, full = timed_write(
            raw_db, base_db, lambda engine: engine.rebuild(SCHEME)
        )
        rebuilds.append(elapsed)
        for label, batch in kinds:
            best, _times_k, reports[label], flush = ingest_time(base_db, batch, args.repeats)
            ingests[label].append(best)
            ratios[label].append(elapsed / best)
            flushes[label] = max(flushes[label], flush)
    t_rebuild = min(rebuilds)
    n_sys = len(full.recomputed[SCHEME])
    note(
        (
            "full rebuild: every hull",
            f"{t_rebuild:.2f} s",
            f"{n_sys} systems, {full.phases_written:,} phases; trials {_times(rebuilds)}; "
            f"background checkpoint after it {rebuild_flush:.2f} s",
        )
    )
    for label, _ in kinds:
        rep = reports[label]
        r = sorted(ratios[label])
        note(
            (
                f"incremental: {label}",
                f"{min(ingests[label]):.2f} s",
                f"{len(rep.recomputed[SCHEME])} systems recomputed, "
                f"{rep.phases_written:,} phases rewritten; "
                f"{statistics.median(r):,.1f}x faster than the rebuild of its trial "
                f"(median; trials {', '.join(f'{x:.1f}x' for x in ratios[label])}); "
                f"ingest trials {_times(ingests[label])} (each the best of {args.repeats}); "
                f"background checkpoint after it {flushes[label]:.2f} s",
            )
        )
    batch = [random_entry(rng, rng.choice(systems), refs, f"s{i}") for i in range(args.batch)]
    best, _times_s, rep, flush = ingest_time(base_db, batch, 1)
    note(
        (
            "incremental: scattered batch: random systems",
            f"{best:.2f} s",
            f"{len(rep.recomputed[SCHEME])} systems recomputed, "
            f"{rep.phases_written:,} phases rewritten; "
            f"{rebuilds[-1] / best:,.1f}x faster than the last rebuild; one trial; "
            f"background checkpoint after it {flush:.2f} s",
        )
    )

    # 4. the peer: pymatgen's PatchedPhaseDiagram over all entries, then e_above_hull of a batch
    repo = open_repository(f"sqlite:///{base_db}")
    pool = [
        ComputedEntry(Composition(d["composition"]), d["energy"], entry_id=d["id"])
        for d in repo.find("entries", {"scheme": SCHEME})
    ]
    t0 = time.perf_counter()
    ppd = PatchedPhaseDiagram(pool, keep_all_spaces=False)
    t_ppd = time.perf_counter() - t0
    probe = [ComputedEntry(Composition(e.composition), e.energy) for e in campaign]
    t0 = time.perf_counter()
    for e in probe:
        ppd.get_e_above_hull(e, allow_negative=True)
    t_probe = time.perf_counter() - t0
    note(("pymatgen PatchedPhaseDiagram build", f"{t_ppd:.2f} s", f"{len(ppd.pds)} patches"))
    note(
        (
            "  + e_above_hull of the campaign round",
            f"{t_probe:.2f} s",
            "(existing hull only: no decomposition energies, nothing stored)",
        )
    )

    table = Table(
        title=f"bench/hull.py: {repo.count('entries'):,} entries, batches of {args.batch:,} "
        f"(SQLite, 1 process, {args.trials} trials)"
    )
    table.add_column("operation")
    table.add_column("time", justify="right")
    table.add_column("notes")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    repo.close()
    shutil.rmtree(workdir, ignore_errors=True)


def _times(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    main()
