"""Generation benchmark: SAPS and random-search rates, and dedup cost against database size.

    .venv/bin/python bench/generation.py            # a few minutes on 2 cores
    .venv/bin/python bench/generation.py --quick    # DB sizes 10^3 and 10^4 only
    .venv/bin/python bench/generation.py --plain    # plain-text table

What is measured, all in one run, on one process:

1. SAPS: candidates per second for rock salt (Na->K, conventional cell) and a 2x2x2
   perovskite (Ti->Zr), every site subset up to symmetry (``partial_mode="sites"``), against
   the naive route a user would otherwise take for the same outcomes: pymatgen's
   ``SubstitutionTransformation`` for the full substitution plus every subset of the sites by
   brute force, then ``StructureMatcher.group_structures`` to find the distinct ones. Also
   SAPS over every AFLOW prototype of at most 6 sites into Li-Mn-O.
2. Random search: pyxtal-backend candidates per second (NaCl and Li2MnO3, 20 atoms max).
3. Dedup: a query batch (the prototype SAPS outputs plus volume-scaled copies of a third of
   them, which only StructureMatcher can recognise) is deduplicated against a SQLite database
   holding 10^3, 10^4 and 10^5 candidates. The database is synthetic and built quickly: filler
   candidates spread over ~10^5 binary formulas of elements outside Li-Mn-O (each in its own
   fingerprint bucket, as a database growing in breadth has), plus the same anchor
   candidates at every size (scaled copies of another third of the query). The naive route
   (load every stored structure, ``group_structures`` over database + batch) runs at 10^3
   and 10^4; it is linear in the database size, so at 10^5 it is extrapolated from those two
   (``--naive-max 100000`` runs it, which takes many minutes).

Per core: everything runs in one process and is timed in CPU seconds of that process, so a
rate is a per-core rate that other load on the machine does not distort.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymatgen.core import Composition, Lattice, Structure  # noqa: E402

from gnomon.pipeline.dedup import Deduplicator  # noqa: E402
from gnomon.pipeline.generation.random_search import RandomSearch  # noqa: E402
from gnomon.pipeline.generation.saps import SAPSGenerator  # noqa: E402
from gnomon.pipeline.generation.templates import make_template, prototype_templates  # noqa: E402
from gnomon.storage import Candidate, open_repository  # noqa: E402


def clock() -> float:
    """CPU seconds of this process: a per-core figure that other load on the machine does not
    inflate (wall time is printed once, for the whole run)."""
    return time.process_time()


FILLER_ELEMENTS = ["Mg", "Ca", "Ba", "V", "Cr", "Fe", "Co", "Ni", "Cu", "Zn", "Al", "Ga", "Si",
                   "Ge", "Sn", "P", "Sb", "Bi", "S", "Se", "F", "Br", "I", "Rb", "Cs", "Y", "Sc",
                   "Nb", "Mo", "W", "Ta", "Hf", "La", "Ce", "Nd", "In", "Tl", "Pb", "Te", "As",
                   "B", "N", "C", "Cd", "Hg", "Ag", "Au", "Pd", "Pt", "Rh", "Ru", "Ir", "Os",
                   "Re", "Tc", "Be", "Gd", "Sm", "Eu", "Er"]


def rock_salt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])


def perovskite() -> Structure:
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                     [[0.5] * 3, [0, 0, 0], [0.5, 0, 0]])


# -- 1. SAPS ------------------------------------------------------------------------------------
def bench_saps() -> tuple[list[Candidate], dict[str, float]]:
    rs = make_template("rock-salt", rock_salt(), "bench")
    pv = make_template("perovskite-2x2x2", perovskite() * (2, 2, 2), "bench")
    # the same substitutions for SAPS and the naive route: Na->K in rock salt, Ti->Zr in perovskite
    jobs = [(SAPSGenerator(elements=("Na", "K", "Cl"), partial_mode="sites"), rs),
            (SAPSGenerator(elements=("Sr", "Ti", "Zr", "O"), partial_mode="sites"), pv)]
    list(jobs[0][0].generate([rs], limit=1))  # warm the substitution table and imports
    t = clock()
    ours = [c for gen, template in jobs for c in gen.generate([template])]
    t_ours = clock() - t

    protos = list(prototype_templates(max_sites=6))
    saps_p = SAPSGenerator(elements=("Li", "Mn", "O"), max_species=2)
    t = clock()
    from_protos = list(saps_p.generate(protos))
    t_protos = clock() - t

    t = clock()
    naive = naive_substitutions([(rs.structure, "Na", "K"), (pv.structure, "Ti", "Zr")])
    t_naive = clock() - t
    return from_protos, {
        "saps_n": len(ours), "saps_s": t_ours, "protos_n": len(from_protos), "protos_s": t_protos,
        "protos_templates": len(protos), "naive_n": naive, "naive_s": t_naive,
    }


def naive_substitutions(jobs: list[tuple[Structure, str, str]]) -> int:
    """Every subset by brute force (SubstitutionTransformation for the full one), then
    StructureMatcher.group_structures per template: the distinct outcomes a user would find."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.transformations.standard_transformations import SubstitutionTransformation

    matcher = StructureMatcher()
    distinct = 0
    for template, a, b in jobs:
        sites = [i for i, s in enumerate(template) if s.specie.symbol == a]
        outcomes = [SubstitutionTransformation({a: b}).apply_transformation(template)]
        for k in range(1, len(sites)):
            for subset in itertools.combinations(sites, k):
                s = template.copy()
                for i in subset:
                    s.replace(i, b)
                outcomes.append(s)
        distinct += len(matcher.group_structures(outcomes))
    return distinct


# -- 2. random search -----------------------------------------------------------------------------
def bench_random(n: int) -> dict[str, float]:
    search = RandomSearch(n_per_composition=n, seed=0, max_atoms=20)
    list(RandomSearch(n_per_composition=1, seed=99, max_atoms=20).generate(["NaCl"]))  # warm up
    t = clock()
    out = list(search.generate(["NaCl", "Li2MnO3"]))
    return {"random_n": len(out), "random_s": clock() - t, "failures": len(search.failures)}


# -- 3. dedup against the database ---------------------------------------------------------------
def filler_formulas():
    """Binary formulas over elements the query never uses: about 10^5 distinct buckets."""
    ratios = [(a, b) for a in range(1, 9) for b in range(1, 9) if math.gcd(a, b) == 1]
    for x, y in itertools.permutations(FILLER_ELEMENTS, 2):
        for a, b in ratios:
            yield x, y, a, b


def filler_candidates(start: int, count: int, formulas) -> list[Candidate]:
    out = []
    for i in range(start, start + count):
        x, y, a, b = next(formulas)
        comp = Composition({x: a, y: b})
        n = a + b
        edge = 2.5 * n ** (1 / 3) + 2
        # a Structure.as_dict() payload written directly: building 10^5 Structures would
        # dominate the run, and these are never compared (their buckets are not the query's)
        structure = {
            "@module": "pymatgen.core.structure", "@class": "Structure", "charge": 0,
            "lattice": {"matrix": [[edge, 0, 0], [0, edge, 0], [0, 0, edge]], "pbc": [True] * 3},
            "properties": {},
            "sites": [{"species": [{"element": el, "occu": 1}], "label": el, "properties": {},
                       "abc": [k / n, (k * 0.37) % 1, (k * 0.61) % 1]}
                      for k, el in enumerate([x] * a + [y] * b)],
        }
        fp = f"{comp.reduced_formula}|{1 + i % 2}|1"
        out.append(Candidate.model_construct(
            id=f"filler-{i:07d}", structure=structure, formula=comp.formula.replace(" ", ""),
            reduced_formula=comp.reduced_formula, chemsys=comp.chemical_system, nsites=n,
            generator="bench", generator_version="", template_id=None, substitution=None,
            replaced_fraction=None, seed=None, campaign=None, round=None, fingerprint=fp,
            extra={}, created_at=None,
        ))
    return out


def grow(repo, formulas, target: int, have: int) -> int:
    while have < target:
        n = min(5000, target - have)
        repo.insert_new("candidates", filler_candidates(have, n, formulas))
        have += n
    return have


def scaled_copies(candidates: list[Candidate], factor: float) -> list[Candidate]:
    from gnomon.pipeline.identity import candidate_from_structure

    out = []
    for c in candidates:
        s = Structure.from_dict(c.structure)
        s.scale_lattice(s.volume * factor)
        out.append(candidate_from_structure(s, "bench-copy", fingerprint=c.fingerprint))
    return out


def time_dedup(repo, query: list[Candidate], repeats: int = 3) -> tuple[float, int]:
    times, kept = [], 0
    for _ in range(repeats):
        fresh = [c.model_copy() for c in query]
        dd = Deduplicator(repository=repo)
        t = clock()
        kept = len(dd.unique(fresh))
        times.append(clock() - t)
    return statistics.median(times), kept


def time_naive_dedup(repo, query: list[Candidate]) -> tuple[float, int]:
    """What a user without fingerprint buckets does: load every stored structure and group
    database + batch with StructureMatcher.group_structures."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    t = clock()
    stored = [Structure.from_dict(doc["structure"]) for doc in repo.find("candidates")]
    batch = [Structure.from_dict(c.structure) for c in query]
    groups = StructureMatcher().group_structures(stored + batch)
    n_stored = len(stored)
    ids = {id(s): i for i, s in enumerate(stored + batch)}
    new = sum(1 for g in groups if all(ids[id(s)] >= n_stored for s in g))
    return clock() - t, new


class Rows(list):
    """Table rows, each also written to stderr as soon as it is measured (a long run shows
    where it is)."""

    def append(self, row: tuple[str, str, str]) -> None:
        print(" | ".join(x for x in row if x), file=sys.stderr, flush=True)
        super().append(row)

    def __iadd__(self, rows):
        for row in rows:
            self.append(row)
        return self


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="DB sizes 10^3 and 10^4 only")
    ap.add_argument("--random-n", type=int, default=6, help="random structures per composition")
    ap.add_argument("--plain", action="store_true", help="plain-text table")
    ap.add_argument("--naive-max", type=int, default=10_000,
                    help="largest DB size at which the naive dedup route is run (it is linear "
                         "in the DB size; larger sizes are extrapolated from the last two)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    rows = Rows()
    t_wall = time.perf_counter()
    query_saps, saps = bench_saps()
    rows += [
        ("SAPS: rock salt Na->K + 2x2x2 perovskite Ti->Zr, all site subsets",
         f"{saps['saps_n']} candidates in {saps['saps_s']:.1f} s", f"{saps['saps_n'] / saps['saps_s']:.1f} /s"),
        ("  naive: SubstitutionTransformation + brute-force subsets + group_structures",
         f"{saps['naive_n']} distinct in {saps['naive_s']:.1f} s", f"{saps['naive_n'] / saps['naive_s']:.1f} /s"),
        (f"SAPS, {saps['protos_templates']} AFLOW prototypes (<= 6 sites) into Li-Mn-O",
         f"{saps['protos_n']} candidates in {saps['protos_s']:.1f} s",
         f"{saps['protos_n'] / saps['protos_s']:.1f} /s"),
    ]
    rnd = bench_random(args.random_n)
    rows.append(("random search, pyxtal (NaCl, Li2MnO3; <= 20 atoms)",
                 f"{rnd['random_n']} candidates in {rnd['random_s']:.1f} s ({rnd['failures']} failed)",
                 f"{rnd['random_n'] / rnd['random_s']:.2f} /s"))

    query = query_saps + scaled_copies(query_saps[::3], 1.07)
    anchors = scaled_copies(query_saps[1::3], 0.95)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    per_candidate: dict[int, float] = {}
    naive_per: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = open_repository(f"sqlite:///{Path(tmp) / 'bench.db'}")
        repo.add_candidates(anchors)
        have = len(anchors)
        formulas = filler_formulas()
        for size in sizes:
            t = clock()
            have = grow(repo, formulas, size, have)
            t_build = clock() - t
            seconds, kept = time_dedup(repo, query)
            per_candidate[size] = seconds / len(query)
            rows.append((f"dedup vs DB of {size:,} candidates (built in {t_build:.0f} s)",
                         f"{len(query)} in, {kept} new, {seconds:.2f} s",
                         f"{per_candidate[size] * 1000:.1f} ms/candidate"))
            if size <= args.naive_max:
                seconds, new = time_naive_dedup(repo, query)
                naive_per[size] = seconds / len(query)
                rows.append((f"  naive: load DB + group_structures, {size:,}",
                             f"{new} new, {seconds:.1f} s", f"{naive_per[size] * 1000:.1f} ms/candidate"))
        repo.close()
    measured = sorted(naive_per)
    if len(measured) >= 2:
        (n1, c1), (n2, c2) = [(n, naive_per[n]) for n in measured[-2:]]
        slope = (c2 - c1) / (n2 - n1)
        for size in sizes:
            if size not in naive_per:
                est = c2 + slope * (size - n2)
                rows.append((f"  naive at {size:,}: linear extrapolation, not run", "",
                             f"~{est * 1000:.0f} ms/candidate"))
    ratio = max(per_candidate.values()) / min(per_candidate.values())
    rows.append(("dedup cost per candidate, largest / smallest DB", "", f"{ratio:.2f}x"))
    if len(naive_per) > 1:
        rows.append(("  naive, largest / smallest DB", "",
                     f"{max(naive_per.values()) / min(naive_per.values()):.2f}x"))
    total = time.perf_counter() - t_wall

    title = (f"gnomon generation benchmark (one process, CPU seconds; {total:.0f} s wall in all)")
    if args.plain:
        print(title)
        width = max(len(r[0]) for r in rows)
        for name, what, rate in rows:
            print(f"{name:<{width}}  {what:<40}  {rate}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("what")
    table.add_column("work")
    table.add_column("rate / cost", justify="right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
