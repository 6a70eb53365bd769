"""Generation benchmark: SAPS, random search, exact dedup and the streaming funnel, in one run.

    nice -n 10 .venv/bin/python bench/generation.py            # ~15 min on 2 shared cores
    nice -n 10 .venv/bin/python bench/generation.py --quick    # ~4 min: smaller sizes
    nice -n 10 .venv/bin/python bench/generation.py --parts dedup --stored 1000 1000000

Prints one markdown table. What is measured:

1. SAPS, fast (default) vs reference path, on the prototype workload: every AFLOW prototype of
   at most 6 sites, two substituted species at most, into chemical systems (Li-Mn-O first, then
   more ternaries). "first run" includes each template's one-off symmetry analysis (memory
   caches emptied, a fresh disk cache); "cold process" empties the memory caches again but
   keeps what the first run wrote to disk (``gnomon.pipeline.generation.template_cache``), as
   the next round or the next ``gnomon generate`` finds it; "warm" reruns with everything in
   memory, as later systems of one run find it. The fast outcomes are checked to be the
   reference outcomes, one by one.
2. Random search (pyxtal): candidates per second with 1 and 2 worker processes (wall time:
   the work is in the workers).
3. Exact dedup against SQLite databases of 10^3, 10^5 and 10^6 stored candidates (10^3 and
   10^4 with --quick). The query is the Li-Mn-O prototype SAPS output plus volume-scaled copies
   of a third of it (duplicates only StructureMatcher recognises); the database holds anchor
   candidates (scaled copies of another third) and filler candidates of ~10^5 binary formulas
   outside Li-Mn-O (other buckets, as a database growing in breadth has). Filler rows are
   written in bulk with sqlite3 into a database the SQLite backend created (the slow part of
   a real insert, building Candidate records, is not what is measured) and cached in
   ``~/.cache/gnomon-bench``. The anchors are stored through the deduplicator, as gnomon stores
   candidates (so they carry their reduced cells). Exactness: the candidates kept are compared
   with an exhaustive ``StructureMatcher.group_structures`` over anchors + query. A second
   query of candidates with formulas no record has measures the index-lookup floor. The same
   query is then deduplicated through the round's Dask fan-out
   (``gnomon.flows.fanout.DaskFanOut.dedup``: whole buckets decided on LocalCluster workers,
   the same decisions, checked) with 1 and 2 worker processes (``--dask-workers``), in wall
   time beside the in-process wall time (cluster start-up not counted).
4. The funnel: SAPS (fast) over prototypes x ternary systems -> exact dedup (seen store on
   disk) -> screen (the shipped pretrained 5-model ensemble, 1 torch thread; a candidate passes
   when E - σ is in the lowest ~2 % of a calibration batch) -> store the passing candidates in
   SQLite. Prints candidates screened per hour per core end to end and for the screen alone,
   and the peak RSS; the rates are extrapolated to 10^6 candidates (said so in the row).

Rates are per core: each stage runs in this process and is timed in CPU seconds of this
process (``time.process_time``), which other load on the machine distorts less than wall time.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
from pymatgen.core import Composition, Structure

from gnomon.config import DaskConfig
from gnomon.flows.distributed import close_clusters, runtime
from gnomon.flows.fanout import DaskFanOut
from gnomon.pipeline.generation import saps_fast
from gnomon.pipeline.generation.dedup import Deduplicator, SQLiteSeenStore
from gnomon.pipeline.generation.random_search import RandomSearch
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.templates import prototype_templates
from gnomon.storage import Candidate, open_repository

CACHE = Path(os.environ.get("GNOMON_BENCH_CACHE", Path.home() / ".cache" / "gnomon-bench"))
SYSTEMS = [
    ("Li", "Mn", "O"),
    ("Na", "Fe", "O"),
    ("K", "Co", "S"),
    ("Mg", "Al", "O"),
    ("Ca", "Ti", "O"),
    ("Li", "Ni", "F"),
    ("Na", "Mn", "S"),
    ("Sr", "Zr", "O"),
]
FUNNEL_ELEMENTS = [
    "Li",
    "Na",
    "K",
    "Mg",
    "Ca",
    "Sr",
    "Al",
    "Ti",
    "Zr",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Cu",
    "Zn",
    "O",
    "S",
    "F",
    "Cl",
    "N",
]
FILLER_ELEMENTS = [
    "Mg",
    "Ca",
    "Ba",
    "V",
    "Cr",
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
    "S",
    "Se",
    "F",
    "Br",
    "I",
    "Rb",
    "Cs",
    "Y",
    "Sc",
    "Nb",
    "Mo",
    "W",
    "Ta",
    "Hf",
    "La",
    "Ce",
    "Nd",
    "In",
    "Tl",
    "Pb",
    "Te",
    "As",
    "B",
    "N",
    "C",
    "Cd",
    "Hg",
    "Ag",
    "Au",
    "Pd",
    "Pt",
    "Rh",
    "Ru",
    "Ir",
    "Os",
    "Re",
    "Tc",
    "Be",
    "Gd",
    "Sm",
    "Eu",
    "Er",
]

clock = time.process_time


class Rows(list):
    """Table rows, each also written to stderr as soon as it is measured."""

    def add(self, what: str, work: str, rate: str) -> None:
        print(f"{what} | {work} | {rate}", file=sys.stderr, flush=True)
        self.append((what, work, rate))


# -- 1. SAPS --------------------------------------------------------------------------------------
def saps_run(protos, systems, method: str) -> tuple[list[Candidate], float]:
    t = clock()
    out = [
        c
        for el in systems
        for c in SAPSGenerator(elements=el, max_species=2, method=method).generate(protos)
    ]
    return out, clock() - t


def same_outcomes(a: list[Candidate], b: list[Candidate]) -> bool:
    return len(a) == len(b) and all(
        x.template_id == y.template_id
        and x.substitution == y.substitution
        and Structure.from_dict(x.structure) == Structure.from_dict(y.structure)
        for x, y in zip(a, b, strict=True)
    )


def forget_templates() -> None:
    """Empty SAPS's in-memory template caches, as a new process starts (the disk cache of
    ``gnomon.pipeline.generation.template_cache`` stays unless its folder is changed)."""
    saps_fast._cache.clear()
    saps_fast._fits.clear()
    saps_fast._by_object.clear()


def bench_saps(rows: Rows, n_systems: int) -> list[Candidate]:
    protos = [t for t in prototype_templates(max_sites=6) if hasattr(t, "structure")]
    list(
        SAPSGenerator(elements=("Na", "K", "Cl"), method="reference").generate(protos[:2])
    )  # imports
    systems = SYSTEMS[:n_systems]
    disk = tempfile.mkdtemp(prefix="gnomon-template-cache-")
    os.environ["GNOMON_CACHE_DIR"] = disk  # this run's own disk cache, empty at first

    ref1, t_ref1 = saps_run(protos, systems[:1], "reference")
    forget_templates()
    fast1, t_cold1 = saps_run(protos, systems[:1], "fast")
    forget_templates()
    _, t_disk1 = saps_run(protos, systems[:1], "fast")
    fast1b, t_warm1 = saps_run(protos, systems[:1], "fast")
    ok1 = same_outcomes(fast1, ref1)
    rows.add(
        f"SAPS reference, {len(protos)} prototypes (<= 6 sites) into Li-Mn-O",
        f"{len(ref1)} candidates, {t_ref1:.2f} s",
        f"{len(ref1) / t_ref1:,.0f} /s",
    )
    rows.add(
        "SAPS fast, same, first run (template symmetry analysed; disk cache empty)",
        f"{len(fast1)} candidates, {t_cold1:.2f} s; same outcomes as reference: {ok1}",
        f"{len(fast1) / t_cold1:,.0f} /s",
    )
    rows.add(
        "SAPS fast, same, cold process (memory caches empty, template symmetry on disk)",
        f"{len(fast1)} candidates, {t_disk1:.3f} s",
        f"{len(fast1) / t_disk1:,.0f} /s",
    )
    rows.add(
        "SAPS fast, same, warm (template symmetry in memory)",
        f"{len(fast1b)} candidates, {t_warm1:.3f} s",
        f"{len(fast1b) / t_warm1:,.0f} /s",
    )

    refn, t_refn = saps_run(protos, systems, "reference")
    os.environ["GNOMON_CACHE_DIR"] = tempfile.mkdtemp(prefix="gnomon-template-cache-")
    forget_templates()
    fastn, t_coldn = saps_run(protos, systems, "fast")
    forget_templates()
    _, t_diskn = saps_run(protos, systems, "fast")
    _, t_warmn = saps_run(protos, systems, "fast")
    okn = same_outcomes(fastn, refn)
    rows.add(
        f"SAPS reference, same prototypes into {len(systems)} ternary systems",
        f"{len(refn)} candidates, {t_refn:.1f} s",
        f"{len(refn) / t_refn:,.0f} /s",
    )
    rows.add(
        f"SAPS fast, {len(systems)} systems, first run (each template analysed once)",
        f"{len(fastn)} candidates, {t_coldn:.2f} s; same outcomes as reference: {okn}",
        f"{len(fastn) / t_coldn:,.0f} /s",
    )
    rows.add(
        f"SAPS fast, {len(systems)} systems, cold process (template symmetry on disk)",
        f"{len(fastn)} candidates, {t_diskn:.2f} s",
        f"{len(fastn) / t_diskn:,.0f} /s",
    )
    rows.add(
        f"SAPS fast, {len(systems)} systems, warm",
        f"{len(fastn)} candidates, {t_warmn:.2f} s",
        f"{len(fastn) / t_warmn:,.0f} /s",
    )
    return fast1


# -- 2. random search -----------------------------------------------------------------------------
def bench_random(rows: Rows, n: int) -> None:
    formulas = ["NaCl", "Li2MnO3", "MgAl2O4"]
    list(RandomSearch(n_per_composition=1, seed=99, max_atoms=20).generate(["NaCl"]))  # imports
    rates = {}
    for procs in (1, 2):
        search = RandomSearch(n_per_composition=n, seed=0, max_atoms=20)
        t = time.perf_counter()
        out = list(search.generate(formulas, processes=procs))
        wall = time.perf_counter() - t
        rates[procs] = len(out) / wall
        rows.add(
            f"random search, pyxtal, {procs} process{'es' if procs > 1 else ''} (wall time)",
            f"{len(out)} candidates ({len(search.failures)} failed), {wall:.1f} s",
            f"{rates[procs]:.2f} /s",
        )
    load = os.getloadavg()[0]
    rows.add(
        "  speed-up, 2 vs 1 processes",
        f"load average {load:.1f} on {os.cpu_count()} cores (shared with other jobs)",
        f"{rates[2] / rates[1]:.2f}x",
    )


# -- 3. dedup -------------------------------------------------------------------------------------
def filler_rows(count: int):
    """Rows for the candidates table: binary formulas outside Li-Mn-O, ~7 polymorphs each."""
    ratios = [(a, b) for a in range(1, 9) for b in range(1, 9) if math.gcd(a, b) == 1]
    formulas = itertools.cycle(
        (x, y, a, b) for x, y in itertools.permutations(FILLER_ELEMENTS, 2) for a, b in ratios
    )
    for i in range(count):
        x, y, a, b = next(formulas)
        comp = Composition({x: a, y: b})
        n = a + b
        edge = 2.5 * n ** (1 / 3) + 2 + (i % 7) * 0.01
        doc = {
            "id": f"filler-{i:08d}",
            "generator": "bench",
            "nsites": n,
            "formula": comp.formula.replace(" ", ""),
            "reduced_formula": comp.reduced_formula,
            "chemsys": comp.chemical_system,
            "fingerprint": comp.reduced_formula,
            "structure": {
                "@module": "pymatgen.core.structure",
                "@class": "Structure",
                "charge": 0,
                "lattice": {"matrix": [[edge, 0, 0], [0, edge, 0], [0, 0, edge]]},
                "properties": {},
                "sites": [
                    {
                        "species": [{"element": el, "occu": 1}],
                        "properties": {},
                        "label": el,
                        "abc": [k / n, (k * 0.37) % 1, (k * 0.61) % 1],
                    }
                    for k, el in enumerate([x] * a + [y] * b)
                ],
            },
        }
        yield (
            doc["id"],
            orjson.dumps(doc),
            doc["reduced_formula"],
            doc["chemsys"],
            None,
            None,
            doc["fingerprint"],
        )


def filler_db(size: int) -> Path:
    """A cached SQLite database (made by the SQLite backend) holding ``size`` filler rows."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"dedup-filler-{size}.db"
    if path.exists():
        return path
    tmp = path.with_suffix(".building")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    open_repository(f"sqlite:///{tmp}").close()  # the backend's schema and indexes
    conn = sqlite3.connect(tmp)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    rows = filler_rows(size)
    while batch := list(itertools.islice(rows, 50_000)):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO candidates (id, doc, reduced_formula, chemsys, campaign, round, "
            "fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?)",
            batch,
        )
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    tmp.rename(path)
    return path


def scaled_copies(candidates: list[Candidate], factor: float, tag: str) -> list[Candidate]:
    from gnomon.pipeline.generation.identity import candidate_from_structure

    out = []
    for c in candidates:
        s = Structure.from_dict(c.structure)
        s.scale_lattice(s.volume * factor)
        out.append(candidate_from_structure(s, tag, id=f"{tag}-{c.id}"))
    return out


def time_dedup(
    repo, query: list[Candidate], repeats: int = 3, unique=None, timer=clock
) -> tuple[float, int, Deduplicator]:
    """Median seconds (``timer``) of deduplicating ``query`` afresh against ``repo``, through
    ``unique(deduplicator, chunk)`` (default: in-process); the kept count; the last
    deduplicator."""
    times, kept, dd = [], 0, None
    for _ in range(repeats):
        fresh = [c.model_copy() for c in query]
        dd = Deduplicator(repository=repo, record_duplicates=False)
        t = timer()
        kept = len(unique(dd, fresh) if unique else dd.unique(fresh))
        times.append(timer() - t)
    return statistics.median(times), kept, dd


def bench_dedup_dask(rows: Rows, repo, query: list[Candidate], workers: list[int]) -> None:
    """The query through the Dask fan-out with each number of local workers, in wall time,
    beside the in-process wall time of the same query; the kept ids are checked equal."""
    wall, kept, _ = time_dedup(repo, query, timer=time.perf_counter)
    want = [c.id for c in Deduplicator(repository=repo).unique([c.model_copy() for c in query])]
    rows.add(
        "  in-process, wall time (same query)",
        f"{len(query)} in, {kept} kept; load average {os.getloadavg()[0]:.1f}",
        f"{len(query) / wall:,.0f} /s",
    )
    for n in workers:
        cfg = DaskConfig(cluster="local", workers=n, cores=1, memory="3GB", start_timeout=300)
        t = time.perf_counter()
        runtime(cfg)
        start = time.perf_counter() - t
        fan_out = DaskFanOut(cfg)
        got = [
            c.id
            for c in fan_out.dedup(Deduplicator(repository=repo), [c.model_copy() for c in query])
        ]  # warm-up, check
        wall, kept, _ = time_dedup(repo, query, unique=fan_out.dedup, timer=time.perf_counter)
        rows.add(
            f"  Dask fan-out, {n} local worker process{'es' if n > 1 else ''}, wall time",
            f"{kept} kept; same kept candidates, in order, as in-process: {got == want}; "
            f"cluster start {start:.1f} s (not counted); load average "
            f"{os.getloadavg()[0]:.1f}",
            f"{len(query) / wall:,.0f} /s",
        )
        close_clusters()


def exhaustive_new(anchors: list[Candidate], query: list[Candidate]) -> int:
    """Groups of group_structures over anchors + query that hold no anchor."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    structures = [Structure.from_dict(c.structure) for c in anchors + query]
    ids = {id(s): i for i, s in enumerate(structures)}
    groups = StructureMatcher().group_structures(structures)
    return sum(1 for g in groups if all(ids[id(s)] >= len(anchors) for s in g))


def novel_query(n: int) -> list[Candidate]:
    """Candidates whose formulas no record and no other query candidate has (LiMnO_k, k>=1000:
    the structure is a placeholder that is never read, as no bucket holds a second member)."""
    out = []
    for i in range(n):
        comp = Composition({"Li": 1, "Mn": 1, "O": 1000 + i})
        out.append(
            Candidate(
                id=f"novel-{i}",
                formula=comp.formula.replace(" ", ""),
                reduced_formula=comp.reduced_formula,
                chemsys="Li-Mn-O",
                nsites=int(comp.num_atoms),
                generator="bench",
                structure={
                    "lattice": {"matrix": [[4, 0, 0], [0, 4, 0], [0, 0, 4]]},
                    "sites": [{"species": [{"element": "Li", "occu": 1}], "abc": [0, 0, 0]}],
                },
            )
        )
    return out


def bench_dedup(
    rows: Rows, query_saps: list[Candidate], sizes: list[int], dask_workers: list[int]
) -> None:
    query = query_saps + scaled_copies(query_saps[::3], 1.07, "copy")
    anchors = scaled_copies(query_saps[1::3], 0.95, "anchor")
    t = clock()
    expected = exhaustive_new(anchors, query)
    t_exh = clock() - t
    novel = novel_query(2000)
    per: dict[int, float] = {}
    per_novel: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            t = time.perf_counter()
            source = filler_db(size)
            t_build = time.perf_counter() - t
            path = Path(tmp) / f"db-{size}.db"
            shutil.copyfile(source, path)  # streamed: the 10^6 file is not read into memory
            repo = open_repository(f"sqlite:///{path}")
            # stored as gnomon stores candidates: through the deduplicator, which hands each
            # kept candidate's reduced cell to the database with it
            repo.add_candidates(Deduplicator(repository=repo).unique(anchors))
            seconds, kept, dd = time_dedup(repo, query)
            per[size] = seconds / len(query)
            misses = kept - expected
            rows.add(
                f"dedup vs SQLite of {size:,} candidates (filler "
                f"{'cached' if t_build < 1 else f'built in {t_build:.0f} s'})",
                f"{len(query)} in, {kept} kept (exhaustive group_structures: {expected}; "
                f"misses {max(misses, 0)}); {dd.stats.reductions} reductions, "
                f"{dd.stats.comparisons} fits; pairs ruled out by site count "
                f"{dd.stats.skipped_by_sites}, lattice {dd.stats.skipped_by_lattice}, "
                f"positions {dd.stats.skipped_by_positions}; scaled copies matched without "
                f"a fit {dd.stats.scaled_copies}",
                f"{len(query) / seconds:,.0f} /s ({per[size] * 1e3:.2f} ms each)",
            )
            seconds, kept, _ = time_dedup(repo, novel)
            per_novel[size] = seconds / len(novel)
            rows.add(
                f"  formulas new to the DB, {size:,} stored",
                f"{len(novel)} in, {kept} kept",
                f"{len(novel) / seconds:,.0f} /s",
            )
            if dask_workers and size == max(sizes):
                bench_dedup_dask(rows, repo, query, dask_workers)
            repo.close()
    rows.add("  exhaustive group_structures over anchors + query", f"{t_exh:.1f} s", "")
    rows.add(
        "dedup cost per candidate, largest / smallest DB",
        f"{min(sizes):,} -> {max(sizes):,} stored",
        f"{max(per.values()) / min(per.values()):.2f}x (new formulas: "
        f"{max(per_novel.values()) / min(per_novel.values()):.2f}x)",
    )


# -- 4. funnel ------------------------------------------------------------------------------------
def funnel_stream(protos):
    systems = itertools.combinations(FUNNEL_ELEMENTS, 3)
    for el in systems:
        yield from SAPSGenerator(elements=el, max_species=2).generate(protos)


def bench_funnel(rows: Rows, n: int) -> None:
    import numpy as np
    import torch

    from gnomon.campaign.screens import ensemble_screen
    from gnomon.models import pretrained
    from gnomon.models.screening import Screener
    from gnomon.pipeline.generation.funnel import Funnel

    torch.set_num_threads(1)
    ensemble = pretrained.load_weights(pretrained.read_card()["weights"])
    protos = [t for t in prototype_templates(max_sites=6) if hasattr(t, "structure")]
    calibration = list(itertools.islice(funnel_stream(protos), 300))
    preds = Screener(ensemble).predict([c.structure for c in calibration])
    bounds = [r.energy_per_atom - r.sigma for r in preds if r.rejected is None]
    threshold = float(np.percentile(bounds, 2))
    with tempfile.TemporaryDirectory() as tmp:
        repo = open_repository(f"sqlite:///{Path(tmp) / 'funnel.db'}")
        seen = SQLiteSeenStore(Path(tmp) / "seen.db")
        funnel = Funnel(
            Deduplicator(repository=repo, seen=seen, record_duplicates=False),
            ensemble_screen(ensemble, threshold),
            repo.add_candidates,
            chunk_size=1000,
        )
        t_wall = time.perf_counter()
        counts = funnel.run(funnel_stream(protos), limit=n)
        wall = time.perf_counter() - t_wall
        stored = repo.count("candidates")
        repo.close()
        seen.close()
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    s = counts.seconds
    total = sum(s.values())
    rows.add(
        f"funnel: SAPS -> exact dedup -> ensemble screen -> store, {n:,} generated",
        f"{counts.duplicates:,} duplicates, {counts.screened:,} screened, {counts.passed:,} "
        f"passed, {stored:,} stored; max {counts.max_buffered} buffered; CPU s: "
        + ", ".join(f"{k} {v:.0f}" for k, v in s.items())
        + f" ({wall:.0f} s wall)",
        f"peak RSS {rss_gb:.2f} GB",
    )
    per_hour = counts.screened / total * 3600
    screen_only = counts.screened / s["screen"] * 3600
    rows.add("  screened per hour per core, end to end", "", f"{per_hour:,.0f} /h")
    rows.add("  screened per hour per core, the screen alone", "", f"{screen_only:,.0f} /h")
    rows.add(
        "  generation + dedup vs the screen (CPU s per screened candidate)",
        f"{(s['generate'] + s['dedup']) / counts.screened * 1e3:.2f} ms vs "
        f"{s['screen'] / counts.screened * 1e3:.2f} ms",
        "",
    )
    hours = 1e6 / per_hour / 2
    rows.add(
        f"  10^6 screened on 2 cores: extrapolated from {counts.screened:,} screened "
        f"({n:,} generated) at this rate, not run",
        "memory is bounded by the chunk (RSS above: the peak of this process up to here)",
        f"~{hours:.1f} h",
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller sizes (~4 min)")
    ap.add_argument(
        "--parts",
        default="saps,random,funnel,dedup",
        help="comma-separated parts to run (default: all four)",
    )
    ap.add_argument(
        "--stored",
        type=int,
        nargs="+",
        help="database sizes for the dedup part (default 10^3 10^5 10^6; --quick 10^3 10^4)",
    )
    ap.add_argument(
        "--dask-workers",
        type=int,
        nargs="*",
        default=[1, 2],
        help="local Dask workers for the dedup fan-out, at the largest size (none: skip)",
    )
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    logging.basicConfig(level=logging.ERROR)
    rows = Rows()
    t0 = time.perf_counter()
    if "saps" in parts:
        query = bench_saps(rows, 3 if args.quick else len(SYSTEMS))
    else:
        protos = [t for t in prototype_templates(max_sites=6) if hasattr(t, "structure")]
        query = list(SAPSGenerator(elements=SYSTEMS[0], max_species=2).generate(protos))
    if "random" in parts:
        # 20 per composition (60 candidates, ~30 s on one process): with 6 (18 candidates)
        # the 2-process figure was a third process-pool start-up, not throughput
        bench_random(rows, 2 if args.quick else 20)
    if "funnel" in parts:  # before the dedup part: its RSS is its own
        bench_funnel(rows, 2_000 if args.quick else 20_000)
    if "dedup" in parts:
        sizes = args.stored or ([1_000, 10_000] if args.quick else [1_000, 100_000, 1_000_000])
        bench_dedup(rows, query, sizes, args.dask_workers)
    total = time.perf_counter() - t0
    print(
        f"\ngnomon generation benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {total:.0f} s wall, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end; rates "
        "per core in CPU seconds unless marked wall)\n"
    )
    print("| what | work | rate |\n|---|---|---|")
    for what, work, rate in rows:
        print(f"| {what} | {work} | {rate} |")


if __name__ == "__main__":
    main()
