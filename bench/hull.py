"""Hull engine benchmark: incremental updates vs full rebuilds vs pymatgen's PatchedPhaseDiagram.

    .venv/bin/python bench/hull.py                 # 10^5 entries, batches of 10^3
    .venv/bin/python bench/hull.py --entries 20000 # quicker

Synthetic entries over many chemical systems of up to five elements are stored in SQLite;
then one batch of new entries is ingested (the incremental path), every hull is rebuilt from
scratch, and pymatgen's PatchedPhaseDiagram is built over the same entries, all in this run.
Two kinds of batch: a campaign batch (new results inside a few chemical spaces, as a round
produces) and a scattered batch (new results spread over random systems, the worst case).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from itertools import combinations
from math import comb
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram  # noqa: E402
from pymatgen.core import Composition  # noqa: E402
from pymatgen.entries.computed_entries import ComputedEntry  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from gnomon.pipeline.entries import make_entry  # noqa: E402
from gnomon.pipeline.hull import HullEngine  # noqa: E402
from gnomon.storage import open_repository  # noqa: E402

ELEMENTS = ["Li", "Na", "K", "Mg", "Ca", "Sr", "Ba", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni",
            "Cu", "Zn", "Al", "Ga", "Si", "Ge", "Sn", "P", "Sb", "Bi", "O", "S", "Se", "F",
            "Cl", "Br"]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--per-system", type=int, default=30, help="entries per chemical system")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    console = Console()
    rng = random.Random(args.seed)
    refs = {el: rng.uniform(-8, -1) for el in ELEMENTS}
    systems = chemical_systems(rng, max(10, args.entries // args.per_system))
    base = [make_entry(el, refs[el], SCHEME, source="ref") for el in ELEMENTS]
    while len(base) < args.entries:
        base.append(random_entry(rng, rng.choice(systems), refs, f"b{len(base)}"))
    print(f"{len(base)} synthetic entries over {len(systems)} chemical systems "
          f"(+{len(ELEMENTS)} elemental references)", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="gnomon-bench-hull-"))
    repo = open_repository(f"sqlite:///{workdir / 'bench.db'}")
    engine = HullEngine(repo)
    rows: list[tuple[str, str, str]] = []

    def note(row: tuple[str, str, str]) -> None:
        rows.append(row)
        print(" | ".join(row), flush=True)

    # 1. raw import throughput (entries stored, no hull), in batches
    t0 = time.perf_counter()
    for k in range(0, len(base), args.batch):
        repo.insert_new("entries", base[k : k + args.batch])
    t_import = time.perf_counter() - t0
    note(("import into SQLite (no hull)", f"{t_import:.2f} s", f"{len(base) / t_import:,.0f} entries/s"))

    # 2. full rebuild of every hull at this size
    t0 = time.perf_counter()
    full = engine.rebuild(SCHEME)
    t_rebuild = time.perf_counter() - t0
    n_sys = len(full.recomputed[SCHEME])
    note(("full rebuild: every hull", f"{t_rebuild:.2f} s", f"{n_sys} systems, {full.phases_written:,} phases"))

    # 3. incremental ingest of one campaign batch (three chemical spaces)
    spaces = [s for s in systems if len(s) == 3][:3]
    sub = [tuple(c) for s in spaces for k in (2, 3) for c in combinations(s, k)]
    campaign = [random_entry(rng, rng.choice(sub), refs, f"c{i}") for i in range(args.batch)]
    t0 = time.perf_counter()
    rep = engine.ingest(campaign)
    t_campaign = time.perf_counter() - t0
    note(("incremental: campaign batch", f"{t_campaign:.2f} s",
                 f"{len(rep.recomputed[SCHEME])} systems; {t_rebuild / t_campaign:,.0f}x faster than rebuild; "
                 f"{args.batch / t_campaign:,.0f} entries/s"))

    # 4. incremental ingest of one scattered batch
    scattered = [random_entry(rng, rng.choice(systems), refs, f"s{i}") for i in range(args.batch)]
    t0 = time.perf_counter()
    rep = engine.ingest(scattered)
    t_scattered = time.perf_counter() - t0
    note(("incremental: scattered batch", f"{t_scattered:.2f} s",
                 f"{len(rep.recomputed[SCHEME])} systems; {t_rebuild / t_scattered:,.1f}x faster than rebuild; "
                 f"{args.batch / t_scattered:,.0f} entries/s"))

    # 5. the peer: pymatgen's PatchedPhaseDiagram over all entries, then e_above_hull of a batch
    pool = [ComputedEntry(Composition(d["composition"]), d["energy"], entry_id=d["id"])
            for d in repo.find("entries", {"scheme": SCHEME})]
    t0 = time.perf_counter()
    ppd = PatchedPhaseDiagram(pool, keep_all_spaces=False)
    t_ppd = time.perf_counter() - t0
    by_id = {e.entry_id: e for e in pool}
    probe = [by_id[e.id] for e in campaign if e.id in by_id]
    t0 = time.perf_counter()
    for e in probe:
        ppd.get_e_above_hull(e, allow_negative=True)
    t_probe = time.perf_counter() - t0
    note(("pymatgen PatchedPhaseDiagram build", f"{t_ppd:.2f} s",
                 f"{len(ppd.pds)} patches; campaign batch is {t_ppd / t_campaign:,.0f}x faster"))
    note(("  + e_above_hull of the campaign batch", f"{t_probe:.2f} s", "(no decomposition energies, nothing stored)"))

    table = Table(title=f"bench/hull.py: {repo.count('entries'):,} entries, batches of {args.batch:,} (SQLite, 1 process)")
    table.add_column("operation")
    table.add_column("time", justify="right")
    table.add_column("notes")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    repo.close()


if __name__ == "__main__":
    main()
