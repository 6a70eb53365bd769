"""`gnomon serve --workers 2` as a user starts it: two processes answer on the one port, with
the same answers, from the view the command built once; a restart on the unchanged database
takes that view instead of building it, and a restart after a change builds a new one."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from serve_helpers import SCHEME, fill, free_port, grid_structure

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.serve.workers import SETTINGS_ENV
from gnomon.storage import open_repository

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

QUERY = '/v1/structures?filter=elements HAS "O"&page_limit=5'.replace(" ", "%20")
TAKEN = "taken from the kept views"


def _serve(url: str, port: int, tmpdir: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gnomon.cli", "serve", "--db", url, "--port", str(port),
         "--workers", "2"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "TMPDIR": str(tmpdir)},
    )


def _get(base: str, path: str = QUERY) -> dict:
    request = urllib.request.Request(base + path, headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        doc = json.loads(response.read())
    doc["meta"].pop("time_stamp")
    return doc


def _workers(pid: int) -> list[int]:
    """The worker processes uvicorn's supervisor ``pid`` started (its other child is
    multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def _started(proc: subprocess.Popen, base: str, log: Path, workers: int = 2) -> list[int]:
    """Wait until the server answers and its workers have their views; their pids."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        pids = _workers(proc.pid)
        if len(pids) == workers and log.read_text().count("OPTIMADE view of") == 1 + workers:
            try:
                _get(base, "/v1/info")
                return pids
            except OSError:
                pass
        time.sleep(0.3)
    pytest.fail(f"gnomon serve --workers {workers} did not start: {log.read_text()}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def _first_view_line(log: Path) -> str:
    return next(line for line in log.read_text().splitlines() if "OPTIMADE view of" in line)


def test_two_workers_answer_on_one_port_and_keep_the_view_across_restarts(tmp_path):
    url = f"sqlite:///{tmp_path / 'gnomon.db'}"
    fill(url)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve-1.log"
    proc = _serve(url, port, tmpdir, log)
    try:
        pids = _started(proc, base, log)
        text = log.read_text()
        assert "2 workers" in text and "Traceback" not in text
        # the command built the view; each worker took it
        assert "built" in _first_view_line(log) and text.count(TAKEN) == 2
        # the settings reach the workers as a private file; the database URL is not in
        # their environment or arguments
        for pid in pids:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            settings = next(v for v in environ if v.startswith(SETTINGS_ENV.encode() + b"="))
            path = Path(settings.split(b"=", 1)[1].decode())
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert url.encode() not in b"\0".join(environ)
            assert url.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        # each worker answers alone while the other is stopped: both serve the one port
        answers = []
        for answering in pids:
            others = [p for p in pids if p != answering]
            for p in others:
                os.kill(p, signal.SIGSTOP)
            try:
                answers.append([_get(base) for _ in range(3)])
            finally:
                for p in others:
                    os.kill(p, signal.SIGCONT)
        assert answers[0] == answers[1]
        assert answers[0][0]["meta"]["data_returned"] > 5
    finally:
        _stop(proc)

    # a restart on the unchanged database builds nothing
    log = tmp_path / "serve-2.log"
    proc = _serve(url, port, tmpdir, log)
    try:
        _started(proc, base, log)
        assert TAKEN in _first_view_line(log) and "built" not in log.read_text()
        unchanged = _get(base)
    finally:
        _stop(proc)
    assert unchanged == answers[0][0]

    # a restart after the database changed builds a new view and shows the change
    repo = open_repository(url)
    HullEngine(repo).ingest([make_entry(None, -30.0, SCHEME, source="after a restart",
                                        structure=grid_structure(["Li", "O", "O"]))])
    repo.close()
    log = tmp_path / "serve-3.log"
    proc = _serve(url, port, tmpdir, log)
    try:
        _started(proc, base, log)
        assert "built" in _first_view_line(log)
        changed = _get(base)
    finally:
        _stop(proc)
    assert changed["meta"]["data_returned"] == unchanged["meta"]["data_returned"] + 1
    # what stays behind is the kept views only: no run directory, no settings file
    left = sorted(p.name for p in (tmpdir / f"gnomon-serve-{os.getuid()}").iterdir())
    assert left and all(name.endswith(".sqlite") for name in left), left
    assert [p.name for p in tmpdir.iterdir()] == [f"gnomon-serve-{os.getuid()}"]
