"""Exact dedup late in a long stream: the last kept candidates of a funnel, against the rest.

    nice -n 10 .venv/bin/python bench/dedup_tail.py [--seen PATH] [--n 2000]

A long round's cost per candidate grows along its stream (bench/round.py): later candidates
meet buckets that earlier ones filled. This replays that moment: from a funnel's on-disk seen
store (default: bench/round.py's 10^6 round, ``~/.cache/gnomon-bench``), the last ``2 n`` kept
candidates are taken out; the first ``n`` of them warm the store up, the last ``n`` are timed
(CPU seconds, one process). Every one of them was kept, so each is compared with its whole
bucket: the expensive path. Two stores, each a fresh copy:

* **layout before 2026-12-07 evening**: members read back with no lattice invariants kept (the
  store's ``inv`` column empty, as a store written by earlier code), so each is sieved afresh;
* **invariants kept**: every member of the timed buckets was sieved once before (as a store
  written by this code is: a member's invariants are written back the first time it is
  compared), so the site-count sieve runs in SQL and the lattice sieve reads stored numbers.

Both take the same decisions (tests/pipeline/test_dedup_buckets.py); the table gives ms per
candidate and the sieve counts.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import orjson

from gnomon.pipeline.generation.dedup import Deduplicator, SQLiteSeenStore
from gnomon.storage import Candidate

DEFAULT = (
    Path.home()
    / ".cache/gnomon-bench/round-1000000/runs/bench-round-1000000/round-000/funnel-seen.db"
)
COUNTS = ("skipped_by_sites", "skipped_by_lattice", "skipped_by_positions", "reductions")


def tail(path: Path, n: int) -> tuple[int, list[Candidate]]:
    con = sqlite3.connect(path)
    last = con.execute("SELECT MAX(rowid) FROM seen").fetchone()[0]
    rows = con.execute(
        "SELECT id, key, doc FROM seen WHERE rowid > ? ORDER BY rowid", (last - 2 * n,)
    ).fetchall()
    con.close()
    out = []
    for cid, key, doc in rows:
        d = orjson.loads(doc)
        structure = d.get("structure", d)
        out.append(
            Candidate.model_construct(id=cid, structure=structure, reduced_formula=key, extra={})
        )
    return last - 2 * n, out


def run(src: Path, n: int, keep_invariants: bool, workdir: Path) -> dict:
    path = workdir / ("kept.db" if keep_invariants else "legacy.db")
    shutil.copy(src, path)
    mark, cands = tail(path, n)
    con = sqlite3.connect(path)
    columns = {row[1] for row in con.execute("PRAGMA table_info(seen)")}
    if "inv" in columns:
        con.execute("UPDATE seen SET inv = NULL")
        con.commit()
    con.close()
    store = SQLiteSeenStore(path)
    store.truncate(mark)
    dedup = Deduplicator(seen=store, record_duplicates=False)
    if keep_invariants:
        for key in {c.reduced_formula for c in cands}:
            for member in store.bucket(key):
                dedup._invariants(member, store, key)
    store.close()
    dedup.seen = store = SQLiteSeenStore(path)  # cold: nothing parsed in memory
    for i in range(0, n, 1000):
        dedup.unique(cands[i : i + 1000])
    before = {k: getattr(dedup.stats, k) for k in COUNTS}
    t = time.process_time()
    kept = sum(len(dedup.unique(cands[i : i + 1000])) for i in range(n, 2 * n, 1000))
    cpu = time.process_time() - t
    store.close()
    return {
        "cpu": cpu,
        "kept": kept,
        **{k: getattr(dedup.stats, k) - before[k] for k in COUNTS},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seen", type=Path, default=DEFAULT)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    if not args.seen.is_file():
        raise SystemExit(f"{args.seen}: no funnel seen store (run bench/round.py first)")
    with sqlite3.connect(args.seen) as con:
        total = con.execute("SELECT COUNT(*) FROM seen").fetchone()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = {
            "layout before (invariants not kept)": run(args.seen, args.n, False, Path(tmp)),
            "invariants kept, site count in SQL": run(args.seen, args.n, True, Path(tmp)),
        }
    print(f"\n{args.seen} ({total:,} kept); the last {args.n} timed after {args.n} more\n")
    print(
        "| store | ms per candidate (CPU) | kept | ruled out: sites | lattice | positions "
        "| reductions |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {1000 * r['cpu'] / args.n:.2f} | {r['kept']} | "
            f"{r['skipped_by_sites']} | {r['skipped_by_lattice']} | "
            f"{r['skipped_by_positions']} | {r['reductions']} |"
        )


if __name__ == "__main__":
    main()
