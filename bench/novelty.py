"""What the novelty check of a report costs, on the benchmark world (bench/world).

Every structure of the world is stored as a phase; the stable compounds are stored as a
campaign's discoveries (created after everything else), the rest as imported known phases.
Then :func:`gnomon.pipeline.thermo.novelty.novelty_of_rows` checks every discovery, as the report
does, and the table says how long it took and what it flagged.

    .venv/bin/python bench/novelty.py [--limit N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from pymatgen.core import Structure

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.novelty import novelty_of_rows, unit_amd
from gnomon.storage import open_repository
from gnomon.storage.documents import Candidate

WORLD = Path(__file__).resolve().parent / "world" / "world.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="check only this many discoveries")
    args = parser.parse_args()
    with gzip.open(WORLD, "rt") as fh:
        records = [json.loads(line) for line in fh]
    unit_amd(
        Structure.from_dict(records[0]["relaxed"])
    )  # amd's numba kernels: compiled or loaded once

    with tempfile.TemporaryDirectory() as tmp:
        repo = open_repository(f"sqlite:///{tmp}/world.db")
        known, found, candidates = [], [], []
        for r in records:
            structure = Structure.from_dict(r["relaxed"])
            if r["is_stable"] and "-" in r["chemsys"]:
                cid = r["id"]
                candidates.append(
                    Candidate(
                        id=cid,
                        structure=r["relaxed"],
                        formula=r["formula"],
                        reduced_formula=structure.composition.reduced_formula,
                        chemsys=r["chemsys"],
                        nsites=len(structure),
                        generator=r["generator"],
                        campaign="world",
                    )
                )
                found.append((structure, cid))
            else:
                known.append(
                    make_entry(
                        structure.composition, r["energy"], "s", structure=structure, source="world"
                    )
                )
        entries = known + [
            make_entry(
                s.composition, -1.0 * len(s), "s", structure=s, candidate_id=cid, campaign="world"
            )
            for s, cid in found
        ]
        repo.put(candidates)
        repo.put(entries)
        rows = [
            {"id": e.id, "chemsys": e.chemsys, "_structure": e.structure}
            for e in entries[len(known) :]
        ][: args.limit]
        start = time.perf_counter()
        result = novelty_of_rows(repo, rows)
        seconds = time.perf_counter() - start
        repo.close()

    flags = Counter(n.flag.value for n in result.values() if n is not None)
    amds = sorted(n.amd for n in result.values() if n is not None and n.amd is not None)
    print(
        "| stored phases | discoveries checked | wall time (s) | per discovery (ms) | new | known "
        "| "
        "ordering-of-disordered | median AMD to nearest (Å) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    median = f"{amds[len(amds) // 2]:.3f}" if amds else "–"
    print(
        f"| {len(entries)} | {len(rows)} | {seconds:.1f} | "
        f"{1000 * seconds / max(len(rows), 1):.0f} | "
        f"{flags['new']} | {flags['known']} | {flags['ordering-of-disordered']} | {median} |"
    )


if __name__ == "__main__":
    main()
