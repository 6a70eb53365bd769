"""Scheduled campaigns really run: `gnomon campaign schedule --every` + `gnomon campaign serve`
on the embedded default (serve starts the workspace's own Prefect server; the test starts none).

Real components: serve's Prefect server with its scheduler service, Prefect's runner, the
campaign and round flows, SQLite. Relaxations use the test double engine (tests/dft), made a
campaign option in every process by ``fake_engine_site/sitecustomize.py``, so a round takes
seconds. Every wait is bounded; serve's whole process group is always torn down; loopback only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from gnomon.campaign.steps import round_finished
from gnomon.flows.server import healthy
from gnomon.storage import Calculation, Campaign, Round, open_repository
from tests.flows.test_prefect_cli import _api, _free_port, _log_tail

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

HERE = Path(__file__).resolve().parent
SITE = HERE / "fake_engine_site"
DFT_TESTS = HERE.parent / "dft"
RUNS_WAIT_S = 600  # two runs, the first one paying for the server's first start
CLI_TIMEOUT_S = 600


def _config(name: str, engine_options: dict | None = None, dispatch: dict | None = None) -> dict:
    """A campaign small enough for a round in seconds: two elements, a handful of candidates,
    a one-model ensemble trained for two epochs, the instant engine."""
    return {
        "name": name,
        "elements": ["Li", "O"],
        "rounds": 1,
        "seed": 1,
        "known_phases": False,
        "saps": {
            "max_candidates": 4,
            "max_template_sites": 4,
            "max_per_template": 2,
            "prototypes": False,
        },
        "random_search": {"n_per_composition": 1, "max_compositions": 1, "max_atoms": 4},
        "compositions": {"max_atoms": 4},
        "model": {
            "start_from": "scratch",
            "ensemble_size": 1,
            "hidden": 8,
            "layers": 1,
            "max_epochs": 2,
            "patience": 1,
            "min_entries": 2,
        },
        "selection": {"policy": "random", "budget": 1, "exploration": 0.0},
        "engine": {"name": "fake", "options": engine_options or {}},
        "dispatch": {
            "name": "local",
            "workers": 1,
            "pack": 8,
            "poll_interval": 0.2,
            **(dispatch or {}),
        },
    }


class Workspace:
    """A gnomon workspace and the environment its commands (and their children) run in."""

    def __init__(self, root: Path, config: dict) -> None:
        self.home = root / "home"
        self.name = config["name"]
        self.config = root / f"{self.name}.yaml"
        self.config.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        self.env = {
            **env,
            "GNOMON_HOME": str(self.home),
            "OMP_NUM_THREADS": "1",
            "COLUMNS": "250",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(SITE), str(DFT_TESTS), os.environ.get("PYTHONPATH")])
            ),
        }
        self.serve_proc: subprocess.Popen | None = None
        self.port = 0
        self.serve_log = root / "serve.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def gnomon(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "gnomon.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )

    def start_serve(self) -> None:
        """`gnomon campaign serve` in a process group of its own, its output in serve.log."""
        self.port = _free_port()
        with self.serve_log.open("a") as log:
            log.write(f"\n=== serve on port {self.port} ===\n")
            log.flush()
            self.serve_proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gnomon.cli",
                    "campaign",
                    "serve",
                    "--no-ui",
                    "--port",
                    str(self.port),
                    "--poll",
                    "1",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill_serve(self) -> None:
        """SIGKILL serve's whole process group: serve, its Prefect server, the run it runs."""
        if self.serve_proc is None:
            return
        try:
            os.killpg(self.serve_proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.serve_proc.wait(timeout=60)

    def stop_serve(self) -> int | None:
        """SIGTERM serve (as a service manager would), SIGKILL its group if it hangs; returns
        serve's exit status."""
        proc = self.serve_proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            return None
        finally:
            self.kill_serve()  # whatever it left in its group

    def campaign(self) -> Campaign:
        with open_repository(f"sqlite:///{self.home / 'gnomon.db'}") as repo:
            return repo.get(Campaign, self.name)

    def repo(self):
        return open_repository(f"sqlite:///{self.home / 'gnomon.db'}")

    def wait_for(self, what: str, condition, timeout_s: float = RUNS_WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            assert self.serve_proc is None or self.serve_proc.poll() is None, (
                f"serve exited ({self.serve_proc.returncode}) before {what}:\n"
                + _log_tail(self.serve_log, 8000)
            )
            time.sleep(1)
        pytest.fail(f"not within {timeout_s} s: {what}\n" + _log_tail(self.serve_log, 8000))

    def flow_runs(self) -> list[dict]:
        deployment = _api(f"{self.api_url}/deployments/name/gnomon-campaign/{self.name}")
        out: list[dict] = []
        while True:
            page = _api(
                f"{self.api_url}/flow_runs/filter",
                {
                    "flow_runs": {"deployment_id": {"any_": [deployment["id"]]}},
                    "limit": 200,
                    "offset": len(out),
                    "sort": "EXPECTED_START_TIME_ASC",
                },
            )
            out.extend(page)
            if len(page) < 200:
                return out


@pytest.fixture
def workspace(tmp_path, request):
    made: list[Workspace] = []

    def make(config: dict) -> Workspace:
        ws = Workspace(tmp_path, config)
        made.append(ws)
        return ws

    yield make
    for ws in made:
        ws.stop_serve()


def _completed(campaign: Campaign) -> list[dict]:
    return [r for r in campaign.runs if r.get("outcome") == "completed"]


def _interval(run: dict, start: str, end: str) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(run[start]), datetime.fromisoformat(run[end])


def _disjoint(intervals: list[tuple[datetime, datetime]]) -> bool:
    ordered = sorted(intervals)
    return all(
        a_end <= b_start for (_, a_end), (b_start, _) in zip(ordered, ordered[1:], strict=False)
    )


def test_scheduled_runs_each_add_a_round_and_never_overlap(workspace):
    ws = workspace(_config("every-few-seconds"))
    # every 30 s: a round takes longer, so runs still come due while one is going (and must be
    # skipped), without a new flow-run process every few seconds taking the round's CPU
    made = ws.gnomon("campaign", "schedule", str(ws.config), "--every", "30s")
    assert made.returncode == 0, made.stdout + made.stderr
    assert ws.campaign().schedule == "every 30s"

    ws.start_serve()
    ws.wait_for("two scheduled runs completed", lambda: len(_completed(ws.campaign())) >= 2)

    # Prefect's own CLI, against the server serve started, lists the deployment
    listed = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "ls"],
        env={**ws.env, "PREFECT_API_URL": ws.api_url},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f"gnomon-campaign/{ws.name}" in listed.stdout
    prefect_runs = ws.flow_runs()

    assert ws.stop_serve() == 0, _log_tail(ws.serve_log, 8000)
    assert not (ws.home / "prefect" / "server.json").exists()
    assert not healthy(ws.api_url, timeout_s=2)  # serve stopped its server

    campaign = ws.campaign()
    completed = _completed(campaign)
    assert len(completed) >= 2
    # each run added exactly one round, the next one, and that round is finished
    assert [r["rounds"] for r in completed] == [[i] for i in range(len(completed))]
    with ws.repo() as repo:
        rounds = {r.index: r for r in repo.query(Round, {"campaign": ws.name})}
    assert all(round_finished(rounds[i]) for i in range(len(completed)))
    # no two runs advanced the campaign at the same time: neither by the lease's record nor
    # by the rounds' own start and finish times
    assert _disjoint([_interval(r, "started_at", "finished_at") for r in completed])
    assert _disjoint([(rounds[i].started_at, rounds[i].finished_at) for i in range(len(completed))])

    # Prefect's records agree: the runs that did work are the completed ones gnomon logged,
    # they did not overlap either, and every run skipped because another was going is logged
    by_id = {r["id"]: r for r in prefect_runs}
    worked = [
        r
        for r in prefect_runs
        if r["state"]["type"] == "COMPLETED" and r["state"]["name"] == "Completed"
    ]
    assert {r["run"] for r in completed} <= {r["id"] for r in worked}
    assert _disjoint(
        [
            (datetime.fromisoformat(r["start_time"]), datetime.fromisoformat(r["end_time"]))
            for r in worked
        ]
    )
    skipped = {r["run"] for r in campaign.runs if r.get("outcome") == "skipped"}
    assert {r["id"] for r in prefect_runs if r["state"]["name"] == "Skipped"} <= skipped
    assert skipped <= set(by_id)

    status = ws.gnomon("campaign", "status", ws.name)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "schedule: every 30s, 1 round per run; next run: " in status.stdout
    assert "last run: " in status.stdout


def test_serve_killed_mid_run_resumes_the_round_without_repeating_a_relaxation(workspace):
    # one relaxation at a time, each taking a few seconds in its own worker process: round 0
    # stays part-way through its relaxations long enough for the kill to land there
    ws = workspace(_config("killed-mid-run", engine_options={"sleep_s": 3.0}, dispatch={"pack": 1}))
    made = ws.gnomon("campaign", "schedule", str(ws.config), "--every", "10s")
    assert made.returncode == 0, made.stdout + made.stderr

    def part_way() -> bool:
        if not (ws.home / "gnomon.db").exists():
            return False
        with ws.repo() as repo:
            done = repo.count("calculations", {"round": 0, "state": "done"})
            return 1 <= done < repo.count("calculations", {"round": 0})

    ws.start_serve()
    ws.wait_for("round 0 part-way through its relaxations", part_way)
    ws.kill_serve()
    killed = [r for r in ws.campaign().runs if r.get("outcome") == "running"]
    assert len(killed) == 1  # the run the kill cut short still holds the campaign
    with ws.repo() as repo:
        before = {c.id: (c.state.value, c.attempts) for c in repo.query(Calculation)}
        assert not round_finished(repo.get(Round, Round.key(ws.name, 0)))
    time.sleep(25)  # serve stays down over two slots of the schedule

    ws.start_serve()
    ws.wait_for(
        "round 0 finished after the restart",
        lambda: any(r.get("outcome") == "completed" for r in ws.campaign().runs),
    )
    prefect_runs = ws.flow_runs()
    assert ws.stop_serve() == 0, _log_tail(ws.serve_log, 8000)

    campaign = ws.campaign()
    log = {r["run"]: r for r in campaign.runs}
    assert log[killed[0]["run"]]["outcome"] == "interrupted"  # the next run took over its lease
    resumed = [r for r in campaign.runs if r.get("outcome") == "completed"]
    assert resumed[0]["rounds"] == [0]  # it finished the interrupted round, not a new one
    with ws.repo() as repo:
        assert round_finished(repo.get(Round, Round.key(ws.name, 0)))
        after = {c.id: c for c in repo.query(Calculation)}
    for cid, (state, attempts) in before.items():
        if state == "done":  # finished before the kill: never run again
            assert after[cid].attempts == attempts
    assert all(c.attempts == 1 for c in after.values())
    started = [
        line
        for c in after.values()
        for line in Path(c.workdir, "attempts.log").read_text().splitlines()
    ]
    assert len(started) == len(after)  # one relaxation started per calculation, none repeated

    # in Prefect: the cut-short run is Crashed; of the slots that came due while serve was
    # down one ran, the others are Missed, as gnomon's run log says
    states = {r["id"]: r["state"]["name"] for r in prefect_runs}
    assert states[killed[0]["run"]] == "Crashed"
    missed = [r for r in campaign.runs if r.get("outcome") == "missed"]
    assert missed and sum(r["count"] for r in missed) == sum(
        1 for s in states.values() if s == "Missed"
    )
