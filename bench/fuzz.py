"""Fuzz ``gnomon serve``'s ``/structures`` with N filters on both backends; a table of answers.

    nice -n 10 .venv/bin/python bench/fuzz.py                 # 10,000 filters, seed 0
    nice -n 10 .venv/bin/python bench/fuzz.py --filters 2000 --seed 7

Half the filters are sentences of optimade's own filter grammar, half are those sentences broken
(truncated, tokens swapped, dropped, doubled, junk put in): the generators of
tests/serve/filter_fuzz.py, which the CI test runs with a fixed seed and a few hundred
examples. Each filter goes to the serve app over SQLite and over MongoDB (mongomock), both
holding the test campaign (tests/serve/serve_helpers.py), in this process (the ASGI app through
its test client: what is measured is the answer, not the network). Every answer is checked:
its status is 200, 400, 403 or 501, an error is an OPTIMADE error document without Python in it,
the two backends agree (status, ids, count), and a 200 lists what a Python evaluation of the
filter picks. The table counts answers by kind and status, and the problems found (the goal:
none). Results also go to ``bench/results/fuzz.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "serve"))

from filter_fuzz import answer_problems, broken, outcome, sentences  # noqa: E402
from filter_oracle import matching_ids, stored_rows  # noqa: E402
from serve_helpers import fill, new_url  # noqa: E402

STATUSES = ("200", "400", "403", "501", "other")


BATCH = 500


def draw_filters(n: int, seed_: int) -> list[tuple[str, str]]:
    """``n`` (kind, filter) pairs, each a sentence or a broken one, from ``seed_``; drawn in
    batches of :data:`BATCH` (hypothesis keeps every example of a run in memory: 10,000 in one
    run grew past 2 GB)."""
    drawn: list[tuple[str, str]] = []
    kinds = st.sampled_from(("sentence", "broken")).flatmap(
        lambda kind: (sentences if kind == "sentence" else broken()).map(lambda f: (kind, f)))
    for batch in range(0, n, BATCH):

        @seed(seed_ * 1_000_003 + batch)
        @settings(max_examples=min(BATCH, n - batch), phases=[Phase.generate], database=None,
                  deadline=None, suppress_health_check=list(HealthCheck))
        @given(kinds)
        def collect(pair):
            drawn.append(pair)

        collect()
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--filters", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # optimade warns about unknown provider fields, by design
    console = Console()

    from fastapi.testclient import TestClient

    from gnomon.serve.app import create_app
    from gnomon.storage.optimade.filter_parser import FastFilterParser
    from gnomon.storage.optimade.predicate import PredicateTransformer

    start = time.perf_counter()
    filters = draw_filters(args.filters, args.seed)
    drawn_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="gnomon-fuzz-") as tmp:
        urls = {b: new_url(b, Path(tmp)) for b in ("sqlite", "mongomock")}
        for url in urls.values():
            fill(url)
        clients = {b: TestClient(create_app(url)) for b, url in urls.items()}
        for client in clients.values():
            client.__enter__()
        collection = clients["sqlite"].app.state.entry_collections["structures"]
        meaning = PredicateTransformer(mapper=collection.resource_mapper)
        rows = stored_rows(urls["sqlite"])
        counts, problems, took = Counter(), [], []
        for kind, filter_ in filters:
            t0 = time.perf_counter()
            found = {}
            for backend, client in clients.items():
                r = client.get("/v1/structures", params={
                    "filter": filter_, "page_limit": 1000, "response_fields": "id"})
                status = str(r.status_code) if str(r.status_code) in STATUSES else "other"
                counts[(kind, backend, status)] += 1
                problems += [(backend, filter_, p) for p in answer_problems(r.status_code, r.text)]
                found[backend] = outcome(r.status_code, r.text)
            took.append(time.perf_counter() - t0)
            if found["sqlite"] != found["mongomock"]:
                problems.append(("both", filter_, f"backends differ: {found}"))
            elif found["sqlite"][0] == 200:
                expected = tuple(matching_ids(
                    meaning.transform(FastFilterParser().parse(filter_)), rows))
                if found["sqlite"][1] != expected:
                    problems.append(("both", filter_, "not the Python evaluation's structures"))
        for client in clients.values():
            client.__exit__(None, None, None)
    report(console, args, filters, counts, problems, took, drawn_s)


def report(console, args, filters, counts, problems, took, drawn_s) -> None:
    table = Table(title=f"{len(filters)} filters (seed {args.seed}), answers by status")
    table.add_column("kind")
    table.add_column("backend")
    for status in STATUSES:
        table.add_column(status, justify="right")
    for kind in ("sentence", "broken"):
        for backend in ("sqlite", "mongomock"):
            table.add_row(kind, backend, *(str(counts[(kind, backend, s)]) for s in STATUSES))
    console.print(table)
    took.sort()
    console.print(f"problems: {len(problems)}; per filter (both backends): "
                  f"p50 {1000 * took[len(took) // 2]:.1f} ms, "
                  f"p95 {1000 * took[int(len(took) * 0.95)]:.1f} ms; "
                  f"drawing the filters {drawn_s:.0f} s")
    for backend, filter_, problem in problems[:20]:
        console.print(f"  {backend}: {problem}: {filter_[:200]!r}", highlight=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"bench/fuzz.py --filters {args.filters} --seed {args.seed}",
        "filters": len(filters),
        "answers": {f"{k}/{b}/{s}": n for (k, b, s), n in sorted(counts.items())},
        "problems": [{"backend": b, "filter": f, "problem": p} for b, f, p in problems],
    }, indent=1))


if __name__ == "__main__":
    main()
