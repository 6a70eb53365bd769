"""Soak: `gnomon serve` under query load while a campaign writes to the same SQLite database,
each of them SIGKILLed at random moments and restarted; then the campaign's final database
against an undisturbed run of the same campaign.

    nice -n 10 .venv/bin/python bench/soak.py                  # 20 minutes of load
    nice -n 10 .venv/bin/python bench/soak.py --minutes 5      # a short check

Everything is on loopback and in a work directory of its own (``--workdir``, default a
temporary one). Three parts, run one after another:

1. the reference: the campaign (a small Li-Na-O campaign, ``--rounds`` rounds, CHGNet
   relaxations in local worker processes) run undisturbed to the end in its own workspace
   (``--reference DIR`` reuses one an earlier run kept with ``--workdir``);
2. the soak, ``--minutes`` long: the same campaign started in a second workspace, `gnomon
   serve` over its database (view refreshed every 2 s), and ``--clients`` threads sending a
   mix of OPTIMADE queries (and the explorer's home page) at about ``--rate`` requests per
   second in all. At random moments (on average every ``--kill-every`` seconds, at least 30 s
   apart) the serve process and the campaign in turns (the campaign's whole process group: the
   Prefect server it started too) are killed with SIGKILL and started again at once: `gnomon
   serve` as before, the campaign with `gnomon campaign resume`. A campaign that finishes
   before the time is up is not started again; the load and the serve kills go on. A campaign
   still running when the time is up is waited for (no more kills) before the comparison;
3. the comparison: candidates, calculations and their states, entries and energies, phases
   and their e_above_hull, and each round's selection, between the two databases; and every
   relaxation started more than once (its ``attempts.log`` has more than one line).

Reported: requests sent and answers by status; p50/p95 latency in the 30 s before each kill,
while the killed process is down (serve: until it answers again; campaign: from the kill until
15 s after its restart) and in the 30 s after; the same outside every such moment. Goals
(issue #28): no lost or repeated relaxation, no 5xx outside the moments the server is down,
p95 <= 100 ms outside them. Results also go to ``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from gnomon.storage import (
    Calculation,
    Campaign,
    Candidate,
    Entry,
    Phase,
    Round,
    open_repository,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
NAME = "soak"
WINDOW_S = 30.0
CAMPAIGN_SETTLE_S = 15.0
MAX_FAILURES = 5  # exits of the campaign not caused by a kill, before the soak gives up
CONFIG = {
    "name": NAME,
    "elements": ["Li", "Na", "O"],
    "seed": 5,
    "known_phases": False,
    "saps": {"max_candidates": 12, "max_template_sites": 4, "max_per_template": 3},
    "random_search": {"n_per_composition": 1, "max_compositions": 2, "max_atoms": 6},
    "compositions": {"max_atoms": 5},
    "model": {"ensemble_size": 2, "hidden": 16, "layers": 1, "max_epochs": 15, "patience": 5,
              "min_entries": 4},
    "selection": {"policy": "threshold", "threshold": 1.0, "budget": 4, "exploration": 0.0,
                  "max_per_group": 2},
    "engine": {"name": "mlip", "options": {"fmax": 0.5, "steps": 15}},
    "dispatch": {"name": "local", "workers": 1, "pack": 2, "poll_interval": 0.5},
}
QUERIES = [
    '/v1/structures?filter=elements HAS ALL "Li","O" AND _gnomon_e_above_hull<=0.1',
    "/v1/structures?filter=nelements=2&page_limit=10",
    "/v1/structures?filter=_gnomon_is_stable=1",
    "/v1/structures?page_limit=5&page_offset=3",
    '/v1/structures?filter=chemical_formula_anonymous="AB"',
    "/v1/info",
    "/v1/info/structures",
    "/",
]


@dataclass
class Answer:
    t: float  # seconds since the soak began, when the request was sent
    status: int  # HTTP status, or 0: no connection (the server is down)
    ms: float


@dataclass
class Kill:
    target: str  # "serve" or "campaign"
    t: float
    back: float | None = None  # serve: first answer after the restart; campaign: restart


@dataclass
class Soak:
    start: float = field(default_factory=time.monotonic)
    answers: list[Answer] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    campaign_failures: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def now(self) -> float:
        return time.monotonic() - self.start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "GNOMON_HOME": str(home), "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "OMP_NUM_THREADS": "1"}


def _start(args: list[str], home: Path, log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen([sys.executable, "-m", "gnomon.cli", *args], env=_env(home),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _client_loop(soak: Soak, base: str, seed: int, interval: float) -> None:
    rng = random.Random(seed)
    client = httpx.Client(base_url=base, timeout=30)
    while not soak.stop.is_set():
        query = rng.choice(QUERIES)
        t = soak.now()
        begin = time.perf_counter()
        try:
            status = client.get(query).status_code
        except httpx.HTTPError:
            status = 0
            client.close()
            client = httpx.Client(base_url=base, timeout=30)
        ms = (time.perf_counter() - begin) * 1000
        with soak.lock:
            soak.answers.append(Answer(t, status, ms))
        time.sleep(max(0.0, interval - ms / 1000) if status else 0.2)
    client.close()


def _wait_answering(base: str, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if httpx.get(base + "/v1/info", timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def reference_run(work: Path, config: Path, rounds: int, console: Console) -> float:
    home = work / "reference"
    console.print(f"reference: the campaign undisturbed, {rounds} rounds ({home})")
    begin = time.monotonic()
    proc = _start(["campaign", "run", str(config), "--rounds", str(rounds)], home,
                  work / "reference.log")
    if proc.wait() != 0:
        raise SystemExit(f"the reference campaign failed; see {work / 'reference.log'}")
    return time.monotonic() - begin


class Soaker:
    """The soak's processes: the campaign and the server, each restartable after a kill."""

    def __init__(self, work: Path, config: Path, rounds: int, port: int):
        self.home = work / "soak"
        self.work, self.config, self.rounds, self.port = work, config, rounds, port
        self.base = f"http://127.0.0.1:{port}"
        self.campaign: subprocess.Popen | None = None
        self.serve: subprocess.Popen | None = None
        self.campaign_done = False
        self.campaign_failures: list[int] = []

    def start_campaign(self, resume: bool) -> None:
        args = (["campaign", "resume", NAME, "--rounds", str(self.rounds)] if resume else
                ["campaign", "run", str(self.config), "--rounds", str(self.rounds)])
        self.campaign = _start(args, self.home, self.work / "campaign.log")

    def start_serve(self) -> None:
        self.serve = _start(["serve", "--port", str(self.port), "--poll", "2"], self.home,
                            self.work / "serve.log")

    def campaign_running(self) -> bool:
        """Whether the campaign is still going; one that failed by itself is resumed."""
        if self.campaign_done or self.campaign is None:
            return False
        code = self.campaign.poll()
        if code is None:
            return True
        if code == 0:
            self.campaign_done = True
            return False
        self.campaign_failures.append(code)
        if len(self.campaign_failures) > MAX_FAILURES:
            raise SystemExit(f"the campaign failed {len(self.campaign_failures)} times by "
                             f"itself; see {self.work / 'campaign.log'}")
        self.start_campaign(resume=True)
        return True


def _kill_once(soak: Soak, soaker: Soaker, target: str) -> None:
    kill = Kill(target, soak.now())
    with soak.lock:
        soak.kills.append(kill)
    if target == "serve":
        _kill_group(soaker.serve)
        soaker.start_serve()
        _wait_answering(soaker.base, 300)
        kill.back = soak.now()
    else:
        _kill_group(soaker.campaign)
        soaker.start_campaign(resume=True)
        kill.back = soak.now() + CAMPAIGN_SETTLE_S


def run_soak(work: Path, config: Path, args: argparse.Namespace, console: Console) -> Soak:
    soaker = Soaker(work, config, args.rounds, _free_port())
    try:
        return _soak(soaker, args, console)
    except BaseException:
        for proc in (soaker.serve, soaker.campaign):
            if proc is not None and proc.poll() is None:
                _kill_group(proc)
        raise


def _soak(soaker: Soaker, args: argparse.Namespace, console: Console) -> Soak:
    work = soaker.work
    rng = random.Random(args.seed)
    soaker.start_campaign(resume=False)
    db = soaker.home / "gnomon.db"
    while not db.exists():  # the server needs a database to open
        time.sleep(0.5)
    time.sleep(2)
    soaker.start_serve()
    if not _wait_answering(soaker.base, 300):
        raise SystemExit(f"gnomon serve did not start; see {work / 'serve.log'}")
    soak = Soak()
    interval = args.clients / args.rate
    clients = [threading.Thread(target=_client_loop, args=(soak, soaker.base, args.seed + i,
                                                           interval), daemon=True)
               for i in range(args.clients)]
    for c in clients:
        c.start()
    end = args.minutes * 60
    console.print(f"soak: {args.minutes} min of load on {soaker.base}, kills on average every "
                  f"{args.kill_every:.0f} s")
    next_kill = rng.uniform(WINDOW_S, WINDOW_S + args.kill_every)
    turn = rng.randrange(2)  # the targets take turns, the first drawn at random
    while soak.now() < end:
        soaker.campaign_running()
        if soak.now() >= next_kill and soak.now() < end - WINDOW_S:
            target = ("serve", "campaign")[turn % 2] if soaker.campaign_running() else "serve"
            turn += 1
            console.print(f"  {soak.now():7.1f} s: SIGKILL {target}")
            _kill_once(soak, soaker, target)
            next_kill = soak.now() + WINDOW_S + rng.expovariate(1 / args.kill_every)
        time.sleep(0.5)
    soak.stop.set()
    for c in clients:
        c.join(timeout=60)
    console.print(f"  {soak.now():7.1f} s: load stopped; waiting for the campaign to finish")
    while soaker.campaign_running():
        time.sleep(2)
    soaker.serve.terminate()
    soaker.serve.wait(timeout=60)
    soak.campaign_failures = soaker.campaign_failures
    return soak


def snapshot(home: Path) -> dict[str, list]:
    repo = open_repository(f"sqlite:///{home / 'gnomon.db'}")
    try:
        return {
            "candidates": sorted(c.id for c in repo.query(Candidate)),
            "calculations": sorted((c.id, c.state.value) for c in repo.query(Calculation)),
            "entries": sorted((e.id, round(e.energy, 5)) for e in repo.query(Entry)),
            "phases": sorted((p.id, round(p.e_above_hull, 5) if p.e_above_hull is not None
                              else None, p.is_stable) for p in repo.query(Phase)),
            "rounds": sorted((r.index, tuple(sorted(r.outputs.get("select", {}).get(
                "selected", [])))) for r in repo.query(Round)),
        }
    finally:
        repo.close()


def check_reference(home: Path, rounds: int) -> None:
    """Refuse a reference workspace of another campaign or number of rounds."""
    repo = open_repository(f"sqlite:///{home / 'gnomon.db'}", read_only=True)
    try:
        stored = repo.get(Campaign, NAME)
        finished = repo.count("rounds", {"campaign": NAME})
    finally:
        repo.close()
    if stored is None or finished != rounds or stored.config.get("seed") != CONFIG["seed"]:
        raise SystemExit(f"{home} is not an undisturbed run of this campaign over {rounds} "
                         "rounds")


def repeated_relaxations(home: Path) -> dict[str, int]:
    """Calculations whose relaxation was started more than once, with the count."""
    out = {}
    for log in (home / "runs").rglob("attempts.log"):
        n = len(log.read_text().splitlines())
        if n > 1:
            out[log.parent.name] = n
    return out


def _pcts(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], values[0]
    q = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), q[94]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def windows(soak: Soak) -> tuple[list[dict], list[tuple[float, float]]]:
    """Per kill: latency before, during and after; and the 'down' intervals (during)."""
    rows, down = [], []
    for k in soak.kills:
        back = k.back if k.back is not None else k.t
        down.append((k.t, back))
        parts = {"before": (k.t - WINDOW_S, k.t), "during": (k.t, back),
                 "after": (back, back + WINDOW_S)}
        row: dict = {"target": k.target, "t": round(k.t, 1), "down_s": round(back - k.t, 1)}
        for name, (a, b) in parts.items():
            sel = [x for x in soak.answers if a <= x.t < b]
            p50, p95 = _pcts([x.ms for x in sel if x.status == 200])
            row[name] = {"n": len(sel), "p50_ms": p50, "p95_ms": p95,
                         "5xx": sum(1 for x in sel if x.status >= 500),
                         "no_connection": sum(1 for x in sel if x.status == 0)}
        rows.append(row)
    return rows, down


def report(soak: Soak, ref_s: float | None, same: dict[str, bool], repeated: dict[str, int],
           args: argparse.Namespace, console: Console) -> dict:
    rows, down = windows(soak)
    outside = [x for x in soak.answers if not any(a <= x.t < b for a, b in down)]
    p50, p95 = _pcts([x.ms for x in outside if x.status == 200])
    statuses = Counter("no connection" if x.status == 0 else str(x.status) for x in soak.answers)
    fivexx_outside = sum(1 for x in outside if x.status >= 500)
    refused_outside = sum(1 for x in outside if x.status == 0)
    table = Table(title=f"soak: {args.minutes} min, {len(soak.kills)} kills")
    for col in ("kill", "at s", "down s", "before n/p50/p95", "during n/p50/p95",
                "after n/p50/p95", "5xx"):
        table.add_column(col, justify="right")
    for r in rows:
        cells = [f"{r[w]['n']}/{_fmt(r[w]['p50_ms'])}/{_fmt(r[w]['p95_ms'])}"
                 for w in ("before", "during", "after")]
        table.add_row(r["target"], f"{r['t']:.0f}", f"{r['down_s']:.1f}", *cells,
                      str(sum(r[w]["5xx"] for w in ("before", "during", "after"))))
    console.print(table)
    summary = Table(title="soak summary")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_row("requests sent", str(len(soak.answers)))
    for status, n in sorted(statuses.items()):
        summary.add_row(f"answers {status}", str(n))
    summary.add_row("p50 / p95 outside kills (ms)", f"{_fmt(p50)} / {_fmt(p95)}")
    summary.add_row("5xx outside kills", str(fivexx_outside))
    summary.add_row("no connection outside kills", str(refused_outside))
    summary.add_row("campaign exits not caused by a kill",
                    str(len(soak.campaign_failures)))
    summary.add_row("reference campaign (s)", "earlier run" if ref_s is None else f"{ref_s:.0f}")
    for part, ok in same.items():
        summary.add_row(f"final {part} = undisturbed run", "yes" if ok else "NO")
    summary.add_row("relaxations started more than once", str(len(repeated)))
    console.print(summary)
    goals = {"no lost or repeated relaxation": all(same.values()) and not repeated,
             "no 5xx outside kills": fivexx_outside == 0,
             "p95 <= 100 ms outside kills": p95 is not None and p95 <= 100}
    for goal, ok in goals.items():
        console.print(f"goal: {goal}: {'met' if ok else 'NOT met'}")
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["bench/soak.py", *sys.argv[1:]]), "minutes": args.minutes,
            "rounds": args.rounds, "requests": len(soak.answers), "statuses": dict(statuses),
            "p50_ms_outside": p50, "p95_ms_outside": p95, "fivexx_outside": fivexx_outside,
            "no_connection_outside": refused_outside,
            "kills": rows, "same_as_undisturbed": same, "repeated_relaxations": repeated,
            "reference_s": ref_s, "goals": goals, "answers_sample": [asdict(a) for a in
                                                                    soak.answers[:5]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the soak")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of the campaign")
    parser.add_argument("--clients", type=int, default=2, help="query threads")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second in all")
    parser.add_argument("--kill-every", type=float, default=120.0,
                        help="mean seconds between kills")
    parser.add_argument("--seed", type=int, default=28)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--reference", type=Path, default=None,
                        help="the workspace of an earlier undisturbed run of the same campaign "
                        "and rounds (WORKDIR/reference of a run with --workdir): not run again")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    console = Console(width=200)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gnomon-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    config = work / "campaign.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    try:
        if args.reference is None:
            ref_s, reference = reference_run(work, config, args.rounds, console), work / "reference"
        else:
            ref_s, reference = None, args.reference
            check_reference(reference, args.rounds)
        soak = run_soak(work, config, args, console)
        ref, got = snapshot(reference), snapshot(work / "soak")
        same = {part: ref[part] == got[part] for part in ref}
        result = report(soak, ref_s, same, repeated_relaxations(work / "soak"), args, console)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "soak.json").write_text(json.dumps(result, indent=1))
        console.print(f"results: {RESULTS / 'soak.json'}; logs in {work}")
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
