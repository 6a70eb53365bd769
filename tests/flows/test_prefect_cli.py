"""Prefect's own tools work on gnomon's deployments, against a real `prefect server start`.

Two breakages of the pinned stack are caught here, both invisible to gnomon's own code:
- FastAPI >= 0.151 rejects the `null` limit/sort that Prefect 3.8's CLI sends, so
  `prefect deployment ls` and `prefect flow-run ls` die with HTTP 422;
- SQLAlchemy 2.1 breaks the bulk insert in the server's scheduler service
  (`Can't evaluate bulk DML statement`), so a scheduled campaign never gets a flow run.
The server is started by the test (loopback only, its own PREFECT_HOME, a free port) and
always torn down; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SERVER_START_S = 300  # a first start migrates the database; a loaded 2-core machine is slow
SCHEDULER_WAIT_S = 240  # the recent-deployments pass runs every 5 s, the full pass every 60 s
CLI_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _api(url: str, body: dict | None = None) -> object:
    """GET (or POST a JSON body to) the server's REST API and decode the answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class PrefectServer:
    """A `prefect server start` child process and the environment its clients need."""

    def __init__(self, home: Path, port: int) -> None:
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.log = home / "server.log"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "COLUMNS": "250",  # rich tables must not truncate the names asserted on
            "OMP_NUM_THREADS": "1",
        }
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"prefect server exited with {self.proc.returncode}:\n" + _log_tail(self.log)
                )
            try:
                if _api(f"{self.api_url}/health") is True:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(2)
        raise TimeoutError(
            f"prefect server not healthy after {SERVER_START_S} s:\n" + _log_tail(self.log)
        )

    def stop(self) -> None:
        """Stop the server's whole process group (uvicorn and services), escalating to SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[PrefectServer]:
    home = tmp_path / "prefect-home"
    home.mkdir()
    server = PrefectServer(home, _free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_prefect_cli_lists_a_gnomon_deployment_and_the_scheduler_schedules_it(
    tmp_path: Path, prefect_server: PrefectServer
) -> None:
    name = "cli-nightly"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": name, "elements": ["Li", "O"], "rounds": 1}))
    prefect_server.env["GNOMON_HOME"] = str(tmp_path / "gnomon-home")

    made = prefect_server.run(
        "gnomon.cli", "campaign", "schedule", str(config), "--cron", "* * * * *"
    )
    assert made.returncode == 0, made.stdout + made.stderr

    listed = prefect_server.run("prefect", "deployment", "ls")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f"gnomon-campaign/{name}" in listed.stdout

    deployment = _api(f"{prefect_server.api_url}/deployments/name/gnomon-campaign/{name}")
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["* * * * *"]

    # nothing but the server's scheduler service creates runs here: creating a deployment
    # schedules none, and no worker or `serve` is running
    query = {
        "flow_runs": {
            "deployment_id": {"any_": [deployment["id"]]},
            "state": {"type": {"any_": ["SCHEDULED"]}},
        },
        "limit": 10,
        "sort": "EXPECTED_START_TIME_ASC",
    }
    scheduled: list = []
    deadline = time.monotonic() + SCHEDULER_WAIT_S
    while not scheduled and time.monotonic() < deadline:
        scheduled = _api(f"{prefect_server.api_url}/flow_runs/filter", query)
        if not scheduled:
            time.sleep(3)
    assert scheduled, (
        f"the scheduler created no run in {SCHEDULER_WAIT_S} s; server log:\n"
        + _log_tail(prefect_server.log)
    )
    assert all(run["deployment_id"] == deployment["id"] for run in scheduled)

    runs = prefect_server.run(
        "prefect",
        "flow-run",
        "ls",
        "--flow-name",
        "gnomon-campaign",
        "--state-type",
        "SCHEDULED",
        "--limit",
        "100",
        "--output",
        "json",
    )
    assert runs.returncode == 0, runs.stdout + runs.stderr
    listed_runs = {run["id"]: run["deployment_id"] for run in json.loads(runs.stdout)}
    assert {run["id"] for run in scheduled} <= set(listed_runs)
    assert set(listed_runs.values()) == {deployment["id"]}
