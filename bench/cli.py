"""How long a person waits for the CLI: `gnomon --help`, `gnomon phases` on a database of 10^5
stored phases, and `gnomon model predict` of one CIF.

    .venv/bin/python bench/cli.py                  # 5 runs of each
    .venv/bin/python bench/cli.py --runs 3 --no-predict
    .venv/bin/python bench/cli.py --all-rows      # also every phase as a table and as JSON

Cold is a fresh process per run (the console script, as a person starts it): the interpreter,
the imports and the work. It is given as wall time and as the process's CPU time (user +
system): on a shared, busy machine the wall time is mostly waiting for a core, and the CPU
time is close to what an idle machine's wall time would be. Warm is the same command run again
inside one process (typer's CliRunner) once a first run has paid the imports: what the work
itself costs. The table gives the median of the runs beside the goal. Peers in the same run:
``python -c pass`` (the interpreter's own start) and a bare typer app's ``--help`` (the floor
any typer CLI with a rich help page pays). The cold runs of all commands are interleaved, run
by run, so that a change in the machine's load falls on all of them alike; the load average is
printed with the table.

The database is built once with gnomon's own repository and hull engine (synthetic entries
over many chemical systems, as bench/hull.py makes them, every one a stored phase) in
bench/results/cli-phases-100000.db, and reused.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hull import chemical_systems, random_entry  # noqa: E402 - bench/hull.py's entries

from gnomon.cli import app  # noqa: E402
from gnomon.pipeline.thermo.hull import HullEngine  # noqa: E402
from gnomon.storage import open_repository  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GNOMON = Path(sys.executable).with_name("gnomon")
BARE_TYPER = """\
import typer
app = typer.Typer()
@app.command()
def a(x: int = 1):
    "One."
@app.command()
def b(x: int = 1):
    "Two."
app()
"""


def phases_database(n_entries: int) -> Path:
    """A SQLite database of ``n_entries`` entries and their phases (built once, then reused)."""
    path = RESULTS / f"cli-phases-{n_entries}.db"
    if path.exists():
        return path
    RESULTS.mkdir(parents=True, exist_ok=True)
    building = path.with_suffix(".building")
    for stale in building.parent.glob(building.name + "*"):
        stale.unlink()
    rng = random.Random(0)
    systems = chemical_systems(rng, max(200, n_entries // 20))
    elements = sorted({el for s in systems for el in s})
    refs = {el: rng.uniform(-9.0, -1.0) for el in elements}
    entries = [random_entry(rng, (el,), refs, "ref") for el in elements for _ in range(2)]
    while len(entries) < n_entries:
        entries.append(random_entry(rng, rng.choice(systems), refs, "bench"))
    repo = open_repository(f"sqlite:///{building}")
    t0 = time.perf_counter()
    for i in range(0, len(entries), 10_000):
        repo.insert_new("entries", entries[i : i + 10_000])
    HullEngine(repo).rebuild()  # every hull from the stored entries: a phase per entry
    phases = repo.count("phases")
    repo.close()
    building.rename(path)
    print(f"built {path} ({phases:,} phases) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


def one_cif(folder: Path) -> Path:
    """Li2O (antifluorite) as a CIF, the file a person would predict."""
    li2o = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.61), ["Li", "O"], [[0.25, 0.25, 0.25], [0, 0, 0]]
    )
    path = folder / "Li2O.cif"
    CifWriter(li2o).write_file(path)
    return path


def cold(commands: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict:
    """Median wall and CPU seconds of each command in a fresh process per run (output
    discarded), the commands taking turns run by run."""
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wall[name].append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if done.returncode not in (0, 2):  # predict exits 2 when an input is rejected
                raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return {n: (statistics.median(wall[n]), statistics.median(cpu[n])) for n in commands}


def warm(args: list[str], runs: int) -> float:
    """Median wall time of ``gnomon ARGS`` run again in this process, after a first run."""
    runner = CliRunner()
    first = runner.invoke(app, args)
    if first.exit_code not in (0, 2):
        raise SystemExit(f"gnomon {' '.join(args)} failed: {first.output[-500:]}")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.invoke(app, args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of each command (median)")
    ap.add_argument("--phases", type=int, default=100_000, help="stored phases")
    ap.add_argument("--no-predict", action="store_true", help="skip `model predict`")
    ap.add_argument(
        "--all-rows", action="store_true", help="also every phase as a table and as JSON"
    )
    args = ap.parse_args()
    db = f"sqlite:///{phases_database(args.phases)}"
    goals = {"gnomon --help": "≤ 0.3 s cold"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        home = {"GNOMON_HOME": str(folder / "home"), "COLUMNS": "100"}
        os.environ.update(home)  # the warm runs, in this process, see what the cold ones see
        os.environ.pop("GNOMON_DB", None)
        env = dict(os.environ)
        (folder / "bare.py").write_text(BARE_TYPER)
        gnomon = [str(GNOMON)] if GNOMON.exists() else [sys.executable, "-m", "gnomon.cli"]
        peers = {
            "python -c pass (peer)": [sys.executable, "-c", "pass"],
            "bare typer app --help (peer)": [sys.executable, str(folder / "bare.py"), "--help"],
        }
        commands = {"gnomon --help": ["--help"]}
        queries = [[], ["--chemsys", "Li-Mn-O"], ["--stable"]]  # tables: 50 rows by default
        every = [["--limit", "0"], ["--format", "json"]] if args.all_rows else []
        for query in queries + every:
            name = " ".join(["gnomon phases", *query])
            commands[name] = ["phases", *query, "--db", db]
            goals[name] = "≤ 1.5 s cold" if query in queries else "-"
        if not args.no_predict:
            name = "gnomon model predict Li2O.cif"
            commands[name] = ["model", "predict", str(one_cif(folder)), "--model", "pretrained"]
            goals[name] = "≤ 3 s cold"
        load = os.getloadavg()[0]
        timed = cold(
            {**peers, **{n: [*gnomon, *argv] for n, argv in commands.items()}}, args.runs, env
        )
        warm_s = {name: warm(argv, args.runs) for name, argv in commands.items()}
    table = Table(
        title=f"gnomon CLI, median of {args.runs} runs ({args.phases:,} stored phases; load "
        f"average {load:.1f} on {os.cpu_count()} cores at the start, "
        f"{os.getloadavg()[0]:.1f} at the end)"
    )
    for head in ("command", "cold wall (s)", "cold CPU (s)", "warm (s)", "goal"):
        table.add_column(head, justify="left" if head in ("command", "goal") else "right")
    for name, (wall, cpu) in timed.items():
        w = warm_s.get(name)
        table.add_row(
            name,
            f"{wall:.2f}",
            f"{cpu:.2f}",
            "-" if w is None else f"{w:.3f}",
            goals.get(name, "-"),
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
