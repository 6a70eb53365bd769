"""`gnomon campaign serve` tells its log what it does, at the default level and with its
output going to a file (as under nohup or systemd): the server's URL and UI, the campaigns and
schedules it serves with the next due time, every run's start, rounds and end with its
outcome; one line per event, each headed by an ISO 8601 timestamp, no markup, and no line of
Prefect's own log.

Real components, as in test_scheduled_campaigns (whose workspace this reuses): serve's own
Prefect server with its scheduler, Prefect's runner, the campaign flow, SQLite; the instant
test-double engine. Every wait is bounded, and serve's whole process group (its Prefect server
and the run it runs included) is torn down whatever happens.
"""

from __future__ import annotations

import io
import logging
import re

import pytest

from gnomon.commands.daemon_log import daemon_log
from gnomon.flows.run_watch import entry_lines
from gnomon.storage import Campaign
from tests.flows.test_prefect_cli import _log_tail
from tests.flows.test_scheduled_campaigns import Workspace, _completed, _config

#: the head of every line gnomon logs: "2026-01-02T03:04:05+00:00 INFO "
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d (INFO|WARNING|ERROR) "
LINE_WAIT_S = 60  # serve polls the run log every second (--poll 1)


def _next(campaign: Campaign) -> str:
    return "next run due 2026-01-01T00:00:30+00:00"


def test_a_run_entry_is_told_as_it_starts_finishes_rounds_and_ends():
    c = Campaign(id="c", name="c", config={})
    running = {"run": "r1", "started_at": "2026-01-01T00:00:00.123+00:00", "outcome": "running",
               "rounds": []}
    assert entry_lines(c, None, running, _next) == [
        "campaign c: run r1 started at 2026-01-01T00:00:00+00:00"]
    one = {**running, "rounds": [4]}
    assert entry_lines(c, running, one, _next) == ["campaign c: run r1: round 4 done"]
    ended = {**one, "rounds": [4, 5], "outcome": "completed",
             "finished_at": "2026-01-01T00:01:00.123+00:00"}
    assert entry_lines(c, one, ended, _next) == [
        "campaign c: run r1: round 5 done",
        "campaign c: run r1 completed: 2 rounds done (rounds 4, 5) in 60 s; "
        "next run due 2026-01-01T00:00:30+00:00",
    ]
    failed = {**running, "outcome": "failed", "reason": "StepError: references: no O",
              "finished_at": "2026-01-01T00:00:01+00:00"}
    assert entry_lines(c, running, failed, _next)[-1] == (
        "campaign c: run r1 failed: 0 rounds done in 1 s; StepError: references: no O; "
        "next run due 2026-01-01T00:00:30+00:00")
    skipped = {"run": "r2", "outcome": "skipped", "reason": "run r1 is still advancing it"}
    assert entry_lines(c, None, skipped, _next) == [
        "campaign c: run r2 skipped: run r1 is still advancing it"]
    assert entry_lines(c, None, {"run": "m", "outcome": "missed", "count": 3}, _next) == []


def test_the_daemon_log_is_one_plain_timestamped_line_per_record_and_hides_passwords():
    logger = logging.getLogger("gnomon")
    kept = (list(logger.handlers), logger.level, logger.propagate)
    out = io.StringIO()
    try:
        daemon_log(logging.INFO, stream=out)
        daemon_log(logging.INFO, stream=out)  # a second call replaces the first handler
        logging.getLogger("gnomon.flows.deploy").info("serving %s", "mongodb://u:s3cret@h/db")
        logging.getLogger("gnomon.flows.deploy").debug("not at INFO")
    finally:
        for handler in [h for h in logger.handlers if h not in kept[0]]:
            logger.removeHandler(handler)
        logger.setLevel(kept[1])
        logger.propagate = kept[2]
    (line,) = out.getvalue().splitlines()
    assert re.fullmatch(rf"{STAMP}serving mongodb://u:\S+@h/db", line), line
    assert "s3cret" not in line and "\x1b[" not in line


@pytest.fixture
def ws(tmp_path):
    workspace = Workspace(tmp_path, _config("logged"))
    yield workspace
    workspace.stop_serve()  # SIGTERM, then SIGKILL to its whole process group


def _log(ws: Workspace) -> str:
    return ws.serve_log.read_text(errors="replace")


def _line(ws: Workspace, pattern: str) -> re.Match | None:
    return re.search(rf"^{STAMP}{pattern}$", _log(ws), re.MULTILINE)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_serve_logs_its_url_schedules_and_every_run_to_a_file(ws):
    made = ws.gnomon("campaign", "schedule", str(ws.config), "--every", "30s")
    assert made.returncode == 0, made.stdout + made.stderr

    ws.start_serve()  # stdout and stderr to serve.log, a file
    ws.wait_for("a scheduled run completed", lambda: _completed(ws.campaign()))
    run = _completed(ws.campaign())[0]
    end = (rf"campaign logged: run {run['run']} completed: 1 round done \(round "
           rf"{run['rounds'][0]}\) in \d+ s; next run due \S+")
    ws.wait_for("serve logged the run's end", lambda: _line(ws, end), timeout_s=LINE_WAIT_S)
    assert ws.stop_serve() == 0, _log_tail(ws.serve_log, 8000)
    log = _log(ws)

    assert _line(ws, rf"Prefect server ready: API http://127\.0\.0\.1:{ws.port}/api, "
                     r"UI off \(--no-ui\)"), log
    assert _line(ws, "serving 1 campaign: logged"), log
    due = _line(ws, r"campaign logged: schedule every 30s, 1 round per run; next run due "
                    r"\d{4}-\d\d-\d\dT\d\d:\d\d:(?P<second>\d\d)[+-]\d\d:\d\d")
    assert due, log
    assert int(due.group("second")) % 30 == 0  # an interval slot: :00 or :30
    started = _line(ws, rf"campaign logged: run {run['run']} started at \S+")
    assert started, log
    assert _line(ws, rf"campaign logged: run {run['run']}: round {run['rounds'][0]} done"), log
    assert started.start() < _line(ws, end).start()
    assert _line(ws, "SIGTERM: serve stops, cancelling runs in progress"), log

    # a daemon's log: no markup, no line of Prefect's (the flow runs' "Beginning flow run",
    # "Finished in state ...", the runner's "Opening process..."), nothing the run printed
    # without a timestamp of gnomon's
    assert "\x1b[" not in log
    for noise in ("Beginning flow run", "Finished in state", "Opening process", "| INFO"):
        assert noise not in log, log
    lines = [ln for ln in log.splitlines() if ln.strip() and not ln.startswith("=== serve")]
    assert all(re.match(STAMP, ln) for ln in lines), log
