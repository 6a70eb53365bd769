"""`gnomon serve` benchmark: filter latency and loopback throughput over 10^5 phases, against
the peer a user would otherwise run (optimade's own reference server, over mongomock).

    nice -n 10 .venv/bin/python bench/serve.py                  # 10^5 phases
    nice -n 10 .venv/bin/python bench/serve.py --phases 20000   # quicker
    nice -n 10 .venv/bin/python bench/serve.py --no-peer        # gnomon only
    nice -n 10 .venv/bin/python bench/serve.py --explorer-only  # the explorer's pages only

The database is synthesised directly (entries with small ordered structures and their phases,
written in bulk through the repository, no hull computed: e_above_hull is drawn, 10% on the
hull), and cached in ``bench/results/serve-db/phases-<n>-<seed>.sqlite``: a rerun reuses it
(``--rebuild`` makes it again; about a minute for 10^5). Each server runs in its own process
(``gnomon serve`` as a user starts it); this process is the client:

* latency: ``--requests`` sequential GETs of ``/v1/structures?filter=elements HAS ALL "Li","O"
  AND _gnomon_e_above_hull<=0.05`` (the default page of 20 structures, all fields), after a
  warm-up; p50 and p95 of the wall time per request. "repeated" sends the same filter each
  time (the server remembers a filter's parse and count, as a client paging through results
  gets); "cold" spells the threshold differently each time (0.050000001, ...), so every
  request is parsed, planned and counted afresh;
* load: ``--load-requests`` GETs of a mix of filters from ``--concurrency`` threads, bounded
  in number; requests per second, p95 and the number of errors (non-200 or failed requests).
  The mix repeats four filters, which the server answers from its kept pages after the first
  time; "new filters" sends ``--load-new-requests`` filters spelled differently each time,
  each computed afresh;
* workers: each measurement for ``gnomon serve`` (one process) and ``gnomon serve --workers
  2`` (``--workers``), the server's CPU summed over its processes;
* startup: until the server first answers, with an empty view store (the view is built: the
  command builds it once, the workers take it), again with the view kept from that start
  (the database unchanged), and once more after ``--changed`` of the phases moved (the view
  built from the kept one: only changed rows made again). The servers run on a copy of the
  database (changed by the last start) with ``TMPDIR`` set to a fresh directory, so the cold
  start never finds a view kept by an earlier run.

The peer is optimade-python-tools' reference server (``optimade.server.create_app``) with the
same structure documents inserted into its mongomock backend, which is what its docs start a
provider with; it gets fewer requests (it is slow). Goals (issue #17): p95 <= 100 ms and
>= 200 requests/s with zero errors. Results also go to ``bench/results/serve.json``.

The explorer part (issue #29) opens system pages (a binary, a ternary and a quaternary
space) in Debian's chromium through Playwright, against ``gnomon serve`` in a fresh process:
the first byte and the full load (load event, interactive hull drawn, novelty column filled),
cold (the server's first request for the system, an empty browser cache) and warm, beside the
peer the page used to show, the static hull.svg drawn by matplotlib. Goals: first byte
<= 200 ms, full load <= 1 s. Results go to ``bench/results/serve-explorer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
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
    "S",
    "Se",
    "F",
    "Cl",
    "Br",
    "N",
]
SCHEME = "bench"
FILTER = 'elements HAS ALL "Li","O" AND _gnomon_e_above_hull<=0.05'
LOAD_FILTERS = [
    FILTER,
    'elements HAS ALL "Fe","O" AND nelements=3',
    "_gnomon_e_above_hull<=0 AND nsites<=4",
    'chemical_formula_anonymous="A2B"',
]
console = Console()


# -- the database ----------------------------------------------------------------------------
def _structure(counts: dict[str, int]) -> dict:
    species = [el for el, n in counts.items() for _ in range(n)]
    k = 1
    while k**3 < len(species):
        k += 1
    a = 2.3 * k
    sites = []
    for i, el in enumerate(species):
        abc = [(i // (k * k)) / k, ((i // k) % k) / k, (i % k) / k]
        sites.append(
            {
                "species": [{"element": el, "occu": 1}],
                "abc": abc,
                "xyz": [x * a for x in abc],
                "label": el,
                "properties": {},
            }
        )
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0.0,
        "lattice": {
            "matrix": [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]],
            "pbc": [True] * 3,
            "a": a,
            "b": a,
            "c": a,
            "alpha": 90.0,
            "beta": 90.0,
            "gamma": 90.0,
            "volume": a**3,
        },
        "properties": {},
        "sites": sites,
    }


def synthetic_phase(eid: str, counts: dict[str, int], energy_pa: float, e_hull: float,
                    formation: float, round_: int, spacegroup: str | None):
    """(Entry, Phase) of one synthetic structure (``_structure(counts)``)."""
    from gnomon.storage import Entry, Phase

    total = sum(counts.values())
    elements = sorted(counts)
    chemsys = "-".join(elements)
    reduced = "".join(f"{el}{'' if n_ == 1 else n_}" for el, n_ in counts.items())
    entry = Entry(
        id=eid,
        scheme=SCHEME,
        formula=reduced,
        reduced_formula=reduced,
        chemsys=chemsys,
        elements=elements,
        nsites=total,
        composition={el: float(c) for el, c in counts.items()},
        energy=energy_pa * total,
        uncorrected_energy=energy_pa * total,
        energy_per_atom=energy_pa,
        structure=_structure(counts),
        data={"spacegroup": spacegroup},
        source="bench",
        campaign="bench",
        round=round_,
    )
    phase = Phase(
        id=eid,
        scheme=SCHEME,
        chemsys=chemsys,
        reduced_formula=reduced,
        energy_per_atom=energy_pa,
        formation_energy_per_atom=formation,
        e_above_hull=e_hull,
        decomposition_energy=-0.05 if e_hull == 0 else e_hull,
        is_stable=e_hull == 0,
    )
    return entry, phase


def synthesise(path: Path, n: int, seed: int) -> None:
    """``n`` entries with structures and their phases, written in bulk (no hull computed),
    and an elemental reference of each element (oxygen too), as every hull needs. Each entry
    carries its space group in ``data``, as gnomon's ingest stores it."""
    from pymatgen.core import Structure

    from gnomon.pipeline.spacegroup import spacegroup_of
    from gnomon.storage import Entry, Phase, open_repository
    from gnomon.storage.documents import stable_hash

    groups: dict[tuple, str | None] = {}  # a structure here depends only on its counts

    def spacegroup(counts: dict[str, int]) -> str | None:
        key = tuple(counts.items())
        if key not in groups:
            groups[key] = spacegroup_of(Structure.from_dict(_structure(counts)))
        return groups[key]

    rng = random.Random(seed)
    repo = open_repository(f"sqlite:///{path}")
    chunk: list[tuple[Entry, Phase]] = []

    def flush() -> None:
        with repo.transaction():
            repo.upsert("entries", [e for e, _ in chunk])
            repo.upsert("phases", [p for _, p in chunk])
        chunk.clear()

    start = time.perf_counter()
    for i in range(n):
        k = rng.choices([1, 2, 3, 4], weights=[0.03, 0.37, 0.4, 0.2])[0]
        chosen = set(rng.sample(ELEMENTS, k))
        if k > 1 and rng.random() < 0.45:  # oxides are common, as in the databases people query
            chosen = set(rng.sample(sorted(chosen), k - 1)) | {"O"}
        counts = {el: rng.randint(1, 3) for el in sorted(chosen)}
        energy_pa = rng.uniform(-8.0, -2.0)
        eid = stable_hash({"bench": i, "seed": seed})
        e_hull = 0.0 if rng.random() < 0.1 else rng.expovariate(1 / 0.15)
        chunk.append(synthetic_phase(eid, counts, energy_pa, e_hull, rng.uniform(-3.0, 0.5),
                                     i % 10, spacegroup(counts)))
        if len(chunk) >= 5000:
            flush()
            console.print(
                f"  synthesised {i + 1} phases ({time.perf_counter() - start:.0f} s)",
                highlight=False,
            )
    for el in [*ELEMENTS, "O"]:  # references: above every synthetic energy per atom
        eid = stable_hash({"bench-reference": el, "seed": seed})
        chunk.append(synthetic_phase(eid, {el: 1}, -1.0, 0.0, 0.0, 0, spacegroup({el: 1})))
    flush()
    repo.close()


def database(n: int, seed: int, rebuild: bool) -> Path:
    from gnomon.storage import open_repository

    cache = RESULTS / "serve-db"
    cache.mkdir(parents=True, exist_ok=True)
    # v2: entries carry their space group, and every element has a reference
    path = cache / f"phases-{n}-{seed}-v2.sqlite"
    if rebuild or not path.exists():
        for p in cache.glob(f"{path.name}*"):
            p.unlink()
        tmp = path.with_suffix(".building.sqlite")
        synthesise(tmp, n, seed)
        for suffix in ("-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        tmp.rename(path)
    # opened once by a writer, as a campaign's database is: a database synthesised before
    # gnomon kept served-content stamps gets one, so servers can keep its view
    open_repository(f"sqlite:///{path}").close()
    return path


# -- servers in their own processes ----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, timeout: float,
          env: dict[str, str] | None = None) -> tuple[subprocess.Popen, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True,
        env=env,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/info", timeout=2).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop(proc)
    raise RuntimeError(f"server on port {port} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def peer_server(db: Path, port: int) -> None:
    """optimade's reference server over mongomock, holding the same structure documents."""
    import sqlite3

    import orjson
    import uvicorn
    from optimade.server.config import ServerConfig
    from optimade.server.create_app import create_app

    from gnomon.storage.optimade.resources import PROVIDER_FIELDS, structure_row

    config = ServerConfig(
        insert_test_data=False,
        database_backend="mongomock",
        mongo_database="peer",
        provider={"name": "peer", "description": "peer", "prefix": "gnomon"},
        provider_fields={"structures": [dict(f) for f in PROVIDER_FIELDS]},
        page_limit=20,
        page_limit_max=1000,
        log_level="warning",
    )
    app = create_app(config)
    collection = app.state.entry_collections["structures"]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    batch = []
    for entry, phase in conn.execute(
        "SELECT e.doc, p.doc FROM entries e LEFT JOIN phases p ON p.id = e.id"
    ):
        row = structure_row(orjson.loads(entry), orjson.loads(phase) if phase else None)
        row.pop("nstructure_features", None)
        batch.append(row)
        if len(batch) >= 10_000:
            collection.insert(batch)
            batch = []
    if batch:
        collection.insert(batch)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- the client ------------------------------------------------------------------------------
def cold_filter(i: int) -> str:
    """The benchmark filter, spelled differently each time (a threshold 1e-9 higher), so no
    cache of any kind can answer it: every request parses, plans and counts afresh."""
    return f'elements HAS ALL "Li","O" AND _gnomon_e_above_hull<={0.05 + i * 1e-9:.9f}'


def latency(base: str, filter_: str | None, n: int, warmup: int = 3) -> dict:
    """p50/p95 of ``n`` sequential requests: the same ``filter_`` each time, or with None a
    new spelling each time (:func:`cold_filter`)."""
    times = []
    returned = None
    with httpx.Client(timeout=120) as client:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            r = client.get(f"{base}/v1/structures", params={"filter": filter_ or cold_filter(i)})
            dt = time.perf_counter() - t0
            r.raise_for_status()
            returned = r.json()["meta"]["data_returned"]
            if i >= warmup:
                times.append(dt * 1000)
    times.sort()
    return {
        "requests": n,
        "p50_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))],
        "mean_ms": statistics.fmean(times),
        "data_returned": returned,
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process and its children (a server's workers) have used so
    far, from /proc."""
    def own(p: int) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                children.append(int(entry.name))
    return own(pid) + sum(own(c) for c in children)


def load(base: str, total: int, concurrency: int, pid: int | None = None,
         new_filters: bool = False) -> dict:
    """``total`` GETs from ``concurrency`` threads: the mix of :data:`LOAD_FILTERS`, or with
    ``new_filters`` a filter spelled differently each time (:func:`cold_filter`)."""
    errors = 0
    done = 0
    times: list[float] = []

    def worker(k: int) -> tuple[int, int, list[float]]:
        ok = bad = 0
        took = []
        with httpx.Client(timeout=120) as client:
            for j in range(k, total, concurrency):
                filter_ = cold_filter(10**6 + j) if new_filters else \
                    LOAD_FILTERS[j % len(LOAD_FILTERS)]
                t0 = time.perf_counter()
                try:
                    r = client.get(f"{base}/v1/structures", params={"filter": filter_})
                    ok, bad = (ok + 1, bad) if r.status_code == 200 else (ok, bad + 1)
                except httpx.HTTPError:
                    bad += 1
                took.append((time.perf_counter() - t0) * 1000)
        return ok, bad, took

    cpu0 = cpu_seconds(pid) if pid else None
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for ok, bad, took in pool.map(worker, range(concurrency)):
            done += ok
            errors += bad
            times.extend(took)
    wall = time.perf_counter() - t0
    # the server's own CPU per request: what the machine's other load cannot inflate
    cpu_ms = (cpu_seconds(pid) - cpu0) / total * 1000 if pid else None
    times.sort()
    return {
        "requests": total,
        "concurrency": concurrency,
        "wall_s": wall,
        "requests_per_s": total / wall,
        "p95_ms": times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))],
        "errors": errors,
        "server_cpu_ms_per_request": cpu_ms,
    }


# -- the explorer's system pages (issue #29) -------------------------------------------------
EXPLORER_SYSTEMS = ("Fe-O", "Li-Mn-O", "Fe-Li-Mn-O")  # a binary, a ternary, a quaternary
# drawn and filled in: the interactive hull, and the novelty column (where not sent yet)
PAGE_READY = """() => {
  const hull = document.querySelector('#hull-plot');
  const table = document.querySelector('#phases');
  const drawn = !hull || hull.dataset.ready === '1';
  const filled = !table || !table.dataset.factsSrc || table.dataset.facts === 'ready';
  return drawn && filled;
}"""


def first_byte_ms(client: httpx.Client, url: str) -> float:
    """Milliseconds until the answer's status line and headers arrived."""
    t0 = time.perf_counter()
    with client.stream("GET", url) as r:
        r.raise_for_status()
        return (time.perf_counter() - t0) * 1000


def browser_load(context, url: str) -> dict:
    """Open ``url`` in a browser tab: the browser's first byte and the time until the page is
    loaded, its hull drawn and its table filled (ms)."""
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url, wait_until="load")
    page.wait_for_function(PAGE_READY, timeout=120_000, polling=20)
    full = (time.perf_counter() - t0) * 1000
    timing = page.evaluate("() => { const n = performance.getEntriesByType('navigation')[0];"
                           " return [n.responseStart, n.loadEventEnd]; }")
    rows = page.locator("#phases tbody tr").count()
    window = page.evaluate("() => { const h = document.querySelector('#hull-plot');"
                           " return h && h.data ? h.data.filter(t => t.customdata)"
                           ".reduce((n, t) => n + t.customdata.length, 0) : null; }")
    page.close()
    return {"first_byte_ms": timing[0], "load_event_ms": timing[1], "full_ms": full,
            "rows": rows, "window": window}


def explorer_system(base: str, chemsys: str, browser, repeats: int, pid: int) -> dict:
    """One system page, cold (the server's first request for it, an empty browser cache)
    and warm, with the server's CPU time for each; first the peer, the static hull figure
    the page showed before (hull.svg, matplotlib), drawn for the first time."""
    url = f"{base}/systems/{chemsys}"
    with httpx.Client(timeout=300) as client:
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        svg = client.get(f"{url}/hull.svg", params={"scheme": SCHEME})
        svg_ms = (time.perf_counter() - t0) * 1000 if svg.status_code == 200 else None
        svg_cpu = (cpu_seconds(pid) - cpu0) * 1000
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    cpu0 = cpu_seconds(pid)
    cold = browser_load(context, url)
    cpu1 = cpu_seconds(pid)
    warm = browser_load(context, url)
    cpu2 = cpu_seconds(pid)
    context.close()
    with httpx.Client(timeout=120) as client:
        ttfb = sorted(first_byte_ms(client, url) for _ in range(repeats))
    return {"system": chemsys, "rows": cold["rows"], "window": cold["window"],
            "cold": cold, "warm": warm,
            "cold_server_cpu_ms": (cpu1 - cpu0) * 1000,
            "warm_server_cpu_ms": (cpu2 - cpu1) * 1000,
            "first_byte_p50_ms": statistics.median(ttfb), "first_byte_max_ms": ttfb[-1],
            "static_svg_first_ms": svg_ms, "static_svg_server_cpu_ms": svg_cpu}


def explorer_part(db: Path, repeats: int = 10) -> list[dict]:
    """The explorer's system pages in Debian's chromium (Playwright), against gnomon serve in
    its own process; [] with a note where chromium is not installed."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        console.print("explorer part skipped: no /usr/bin/chromium (apt-get install chromium)")
        return []
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc, _ = start([sys.executable, "-m", "gnomon.cli", "serve", "--db", f"sqlite:///{db}",
                     "--port", str(port)], port, timeout=900)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
            try:
                return [explorer_system(f"http://127.0.0.1:{port}", chemsys, browser, repeats,
                                        proc.pid) for chemsys in EXPLORER_SYSTEMS]
            finally:
                browser.close()
    finally:
        stop(proc)


def explorer_table(rows: list[dict], phases: int) -> Table:
    table = Table(title=f"explorer system pages over {phases} phases "
                        "(goals: first byte <= 200 ms, full load <= 1 s)")
    for col in ("system", "phases in window (listed)", "cold first byte ms",
                "cold full load ms", "cold server CPU ms", "warm first byte ms",
                "warm full load ms", "warm server CPU ms", "first byte p50 / max ms",
                "peer: static hull.svg first draw ms (server CPU ms)"):
        table.add_column(col, justify="left" if col == "system" else "right")
    for r in rows:
        svg = r["static_svg_first_ms"]
        table.add_row(
            r["system"], f"{r['window']} ({r['rows']})", f"{r['cold']['first_byte_ms']:.0f}",
            f"{r['cold']['full_ms']:.0f}", f"{r['cold_server_cpu_ms']:.0f}",
            f"{r['warm']['first_byte_ms']:.0f}", f"{r['warm']['full_ms']:.0f}",
            f"{r['warm_server_cpu_ms']:.0f}",
            f"{r['first_byte_p50_ms']:.0f} / {r['first_byte_max_ms']:.0f}",
            "–" if svg is None else f"{svg:.0f} ({r['static_svg_server_cpu_ms']:.0f})")
    return table


def run_explorer_part(db: Path, phases: int) -> None:
    rows = explorer_part(db)
    if not rows:
        return
    Console(width=220).print(explorer_table(rows, phases))
    console.print("cold: the server's first request for the system and an empty browser cache "
                  "(plotly.js fetched and parsed); warm: the same tab's second visit. Full "
                  "load: until the load event, the interactive hull drawn and the novelty "
                  "column filled. Server CPU: what the server process spent on the page and "
                  f"everything it fetched (what other load cannot inflate). Load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end.",
                  highlight=False)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve-explorer.json").write_text(json.dumps(
        {"date": datetime.now(UTC).isoformat(timespec="seconds"), "phases": phases,
         "cpus": os.cpu_count(), "loadavg": os.getloadavg(), "rows": rows}, indent=2))


def copy_database(source: Path, target: Path) -> None:
    """A copy of the database by SQLite's backup API (the copy holds the source's stamp)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def serve_command(db: Path, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "gnomon.cli", "serve", "--db", f"sqlite:///{db}",
            "--port", str(port), "--workers", str(workers)]


def measure(base: str, pid: int, args: argparse.Namespace) -> dict:
    """Latency (repeated and new filters) and load (the mix and new filters) of one server."""
    lat = latency(base, FILTER, args.requests)
    cold = latency(base, None, args.requests)
    mix = load(base, args.load_requests, args.concurrency, pid=pid)
    new = load(base, args.load_new_requests, args.concurrency, pid=pid, new_filters=True)
    return {**lat, **{f"cold_{k}": v for k, v in cold.items()},
            **{f"load_{k}": v for k, v in mix.items()},
            **{f"load_new_{k}": v for k, v in new.items()}}


def change_phases(db: Path, fraction: float, seed: int) -> int:
    """Move the e_above_hull of ``fraction`` of the phases by 1 meV/atom through the
    repository, as a campaign's hull update does; how many moved."""
    from gnomon.storage import Phase, open_repository

    repo = open_repository(f"sqlite:///{db}")
    try:
        docs = list(repo.find("phases"))
        chosen = random.Random(seed).sample(docs, max(1, int(len(docs) * fraction)))
        for doc in chosen:
            doc["e_above_hull"] = (doc.get("e_above_hull") or 0.0) + 0.001
        repo.upsert("phases", [Phase.from_doc(doc) for doc in chosen])
    finally:
        repo.close()
    return len(chosen)


def gnomon_row(db: Path, workers: int, args: argparse.Namespace, store: Path) -> dict:
    """``gnomon serve --workers N``: started with an empty view store (the view is built),
    then again with the view kept (measured on that second server), then after
    ``args.changed`` of the phases moved (``db`` is changed: a copy)."""
    env = {**os.environ, "TMPDIR": str(store)}
    for kept in store.iterdir():  # the cold start finds no view
        shutil.rmtree(kept, ignore_errors=True)
    port = free_port()
    proc, cold_start = start(serve_command(db, port, workers), port, timeout=900, env=env)
    stop(proc)
    port = free_port()
    proc, kept_start = start(serve_command(db, port, workers), port, timeout=900, env=env)
    try:
        measured = measure(f"http://127.0.0.1:{port}", proc.pid, args)
    finally:
        stop(proc)
    moved = change_phases(db, args.changed, seed=workers)
    port = free_port()
    proc, changed_start = start(serve_command(db, port, workers), port, timeout=900, env=env)
    stop(proc)
    name = "gnomon serve" if workers == 1 else f"gnomon serve --workers {workers}"
    return {"server": name, "workers": workers, "startup_cold_s": cold_start,
            "startup_s": kept_start, "startup_changed_s": changed_start,
            "phases_changed": moved, **measured}


def peer_row(db: Path, args: argparse.Namespace) -> dict:
    port = free_port()
    proc, startup = start(
        [sys.executable, __file__, "--peer-server", "--db", str(db), "--port", str(port)],
        port,
        timeout=1800,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        lat = latency(base, FILTER, args.peer_requests, warmup=1)
        cold = latency(base, None, args.peer_requests, warmup=0)
        ld = load(base, max(args.peer_requests * 2, 8), min(args.concurrency, 4), pid=proc.pid)
    finally:
        stop(proc)
    return {"server": "optimade reference server (mongomock)", "startup_cold_s": startup,
            "startup_s": None, **lat, **{f"cold_{k}": v for k, v in cold.items()},
            **{f"load_{k}": v for k, v in ld.items()}}


def serve_table(rows: list[dict], phases: int) -> Table:
    table = Table(
        title=f"gnomon serve over {phases} phases: filter {FILTER!r} "
        f"(goals: p95 <= 100 ms; >= 200 req/s, 0 errors; start <= 5 s unchanged)"
    )
    for col in ("server", "start: view built s", "start: view kept s",
                "start: after a change s", "matches",
                "repeated p50 / p95 ms", "new filter p50 / p95 ms",
                "load, 4 filters: req/s (p95 ms)", "load, new filters: req/s (p95 ms)",
                "errors", "server CPU ms/request (4 filters / new)"):
        table.add_column(col, justify="left" if col == "server" else "right")

    def num(value: float | None, digits: int = 1) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    for r in rows:
        new = "load_new_requests_per_s" in r
        table.add_row(
            r["server"],
            num(r["startup_cold_s"]),
            num(r["startup_s"]),
            num(r.get("startup_changed_s")),
            str(r["data_returned"]),
            f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f}",
            f"{r['cold_p50_ms']:.1f} / {r['cold_p95_ms']:.1f}",
            f"{r['load_requests_per_s']:.0f} ({r['load_p95_ms']:.0f})",
            f"{r['load_new_requests_per_s']:.0f} ({r['load_new_p95_ms']:.0f})" if new else "–",
            str(r["load_errors"] + r.get("load_new_errors", 0)),
            f"{num(r['load_server_cpu_ms_per_request'])} / "
            f"{num(r.get('load_new_server_cpu_ms_per_request'))}",
        )
    return table


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--phases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rebuild", action="store_true", help="synthesise the database again")
    ap.add_argument("--requests", type=int, default=200, help="sequential requests for latency")
    ap.add_argument("--load-requests", type=int, default=2000)
    ap.add_argument("--load-new-requests", type=int, default=1000,
                    help="requests of the load with a new filter each time")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2,
                    help="worker processes of the server measured beside the one-process one")
    ap.add_argument("--changed", type=float, default=0.01,
                    help="fraction of the phases moved before the start after a change")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--peer-requests", type=int, default=10)
    ap.add_argument("--no-explorer", action="store_true", help="skip the explorer's pages")
    ap.add_argument("--explorer-only", action="store_true",
                    help="only the explorer's system pages (no OPTIMADE latency, load or peer)")
    ap.add_argument("--peer-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_server:
        peer_server(args.db, args.port)
        return

    t0 = time.perf_counter()
    db = database(args.phases, args.seed, args.rebuild)
    console.print(
        f"database {db.relative_to(ROOT)} ready in {time.perf_counter() - t0:.0f} s",
        highlight=False,
    )
    if args.explorer_only:
        run_explorer_part(db, args.phases)
        return
    store = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    work = db.with_name(f"{db.stem}-work.sqlite")  # the starts after a change change it
    try:
        copy_database(db, work)
        rows = [gnomon_row(work, workers, args, store) for workers in (1, args.workers)]
    finally:
        shutil.rmtree(store, ignore_errors=True)
        for path in work.parent.glob(f"{work.name}*"):
            path.unlink()
    if not args.no_peer:
        rows.append(peer_row(db, args))
    Console(width=240).print(serve_table(rows, args.phases))
    console.print(
        f"start: until the server first answers; view built: an empty view store; view kept: "
        f"the view that start kept; after a change: {rows[0]['phases_changed']} phases "
        f"({args.changed:.0%}) moved, the view built from the kept one. Load: "
        f"{args.load_requests} requests of 4 filters (answered from kept pages after the first) "
        f"and {args.load_new_requests} of a new filter each, {args.concurrency} threads.",
        highlight=False,
    )
    console.print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end "
        "(other processes share these CPUs; server CPU ms/request is what they cannot inflate)",
        highlight=False,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "phases": args.phases,
                "filter": FILTER,
                "cpus": os.cpu_count(),
                "loadavg": os.getloadavg(),
                "rows": rows,
            },
            indent=2,
        )
    )
    if not args.no_explorer:
        run_explorer_part(db, args.phases)


if __name__ == "__main__":
    main()
