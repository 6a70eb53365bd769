"""Schedules: campaigns as Prefect deployments, run by ``gnomon campaign serve``.

``schedule`` records a campaign's schedule (a cron, or an interval: ``every 10s``, ``6h``,
``1d``) and how many rounds each run adds in gnomon's database, the source of truth for what
``serve`` serves. Where a Prefect API is in force (``PREFECT_API_URL``, or the workspace's
server while a ``serve`` runs it) it also creates the deployment ``gnomon-campaign/<name>``
there at once, so ``prefect deployment ls`` shows it.

``serve`` runs every scheduled campaign's deployment from this process. Without
``PREFECT_API_URL`` it first starts the workspace's own Prefect server, scheduler included
(:mod:`gnomon.flows.server`, state in ``$GNOMON_HOME/prefect``), and stops it on the way out.
Before taking runs it catches up: scheduled runs that came due while nothing served them run
once, not once per missed slot (the others end Cancelled, named Missed), and on the
workspace's own server a run left Running by a killed ``serve`` is marked Crashed (the next
run resumes its round at the first unfinished step; ``gnomon.campaign.runs`` hands it the
campaign's lease). Schedules are not paused when ``serve`` stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterNextScheduledStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import CronSchedule
from prefect.client.schemas.sorting import FlowRunSort
from prefect.logging.handlers import APILogWorker
from prefect.runner import Runner
from prefect.schedules import Cron, Interval
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
from prefect.states import Cancelled, Crashed

from gnomon.campaign import runs
from gnomon.config import CampaignConfig, Settings
from gnomon.flows.campaign import campaign_flow, register_campaign, settings_payload
from gnomon.flows.run_watch import RunWatch
from gnomon.flows.server import LocalPrefectServer, running_server
from gnomon.plural import counted
from gnomon.storage import Campaign, StorageError, open_repository

log = logging.getLogger(__name__)

DEPLOYMENT_PREFIX = "gnomon-campaign"
#: interval schedules count their slots from here (every 1d: midnight UTC), so a schedule
#: means the same slots whenever ``serve`` re-registers it
INTERVAL_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
#: how often ``serve`` asks the server for due runs (Prefect's default is 10 s)
POLL_S = 5.0

_EVERY = re.compile(r"^\s*(?:every\s+)?(\d+)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> int:
    """Seconds of an interval written ``90``, ``10s``, ``15m``, ``6h`` or ``1d``."""
    match = _EVERY.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"{text!r} is not an interval (a positive number with s, m, h or d, e.g. '10s', '6h')"
        )
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def every(seconds: int) -> str:
    """How an interval schedule is stored on the campaign: ``every <N>s``."""
    return f"every {seconds}s"


def interval_of(schedule: str) -> int | None:
    """The seconds of a stored interval schedule; None for a cron."""
    return parse_every(schedule) if schedule.startswith("every ") else None


def validate_cron(cron: str) -> str:
    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise ValueError(
            f"{cron!r} is not a valid cron expression (five fields, e.g. '0 2 * * *')"
        ) from None
    return cron


def _prefect_schedule(schedule: str):
    seconds = interval_of(schedule)
    if seconds is None:
        return Cron(schedule)
    return Interval(timedelta(seconds=seconds), anchor_date=INTERVAL_ANCHOR)


def _deployment(config: CampaignConfig, settings: Settings, schedule: str, rounds_per_run: int = 1):
    return campaign_flow.to_deployment(
        name=config.name,
        schedule=_prefect_schedule(schedule),
        parameters={
            "config": config.model_dump(mode="json"),
            "settings": settings_payload(settings),
            "rounds_per_run": rounds_per_run,
        },
        description=f"gnomon discovery campaign {config.name} in {config.chemsys}: "
        f"{counted(rounds_per_run, 'round')} per run until its stopping rules end it",
        tags=["gnomon", config.chemsys],
        paused=False,
    )


def next_due(schedule: str, after: datetime | None = None) -> datetime:
    """When ``schedule`` next comes due after ``after`` (default now)."""
    after = after or datetime.now(UTC)
    seconds = interval_of(schedule)
    if seconds is not None:
        slots = int((after - INTERVAL_ANCHOR).total_seconds() // seconds) + 1
        return INTERVAL_ANCHOR + timedelta(seconds=slots * seconds)
    # heavy: prefect's server schemas (its database models), only to read a cron
    from prefect.server.schemas.schedules import CronSchedule as ServerCronSchedule

    (date,) = asyncio.run(
        ServerCronSchedule(cron=schedule).get_dates(n=1, start=after + timedelta(seconds=1))
    )
    return date


def configured_api_url() -> str | None:
    """The Prefect API the user chose (``PREFECT_API_URL`` or their Prefect profile), if any."""
    return os.environ.get("PREFECT_API_URL") or get_current_settings().api.url


@contextmanager
def prefect_api(url: str) -> Iterator[None]:
    """Prefect clients of this process, and of the processes it starts, talk to ``url``."""
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


def schedule(
    config: CampaignConfig,
    settings: Settings,
    cron: str | None = None,
    interval: str | None = None,
    rounds_per_run: int = 1,
) -> str | None:
    """Record the campaign's schedule and register its deployment where a Prefect API is in
    force; returns the deployment's id, or None when ``serve`` will register it."""
    if (cron is None) == (interval is None):
        raise ValueError("give a schedule: --cron '0 2 * * *' or --every 6h (one of the two)")
    if rounds_per_run < 1:
        raise ValueError("--rounds-per-run must be at least 1")
    spec = validate_cron(cron) if cron is not None else every(parse_every(interval))
    register_campaign(settings, config)
    repo = open_repository(settings.db_url)
    try:
        repo.update_fields(
            "campaigns",
            config.name,
            {
                "schedule": spec,
                "rounds_per_run": rounds_per_run,
                "status": "scheduled",
                "stop_reason": None,
            },
        )
    finally:
        repo.close()
    url = configured_api_url() or running_server(settings.home / "prefect")
    if url is None:
        return None
    with prefect_api(url):
        return str(_deployment(config, settings, spec, rounds_per_run).apply())


def scheduled(settings: Settings) -> list[Campaign]:
    repo = open_repository(settings.db_url)
    try:
        return [c for c in repo.query(Campaign) if c.schedule]
    finally:
        repo.close()


def servable(settings: Settings, names: list[str] | None = None) -> list[Campaign]:
    """The scheduled campaigns to serve (all, or those named) that no stopping rule ended."""
    campaigns = [c for c in scheduled(settings) if not names or c.name in names]
    unknown = sorted(set(names or ()) - {c.name for c in campaigns})
    if unknown:
        raise ValueError(
            f"not scheduled: {', '.join(unknown)} "
            "(`gnomon campaign schedule CONFIG --every ...` first)"
        )
    ended = [c for c in campaigns if c.stop_reason]
    for c in ended:
        log.info("campaign %s is not served: it stopped (%s)", c.name, c.stop_reason)
    live = [c for c in campaigns if not c.stop_reason]
    if not live:
        raise ValueError(
            "no scheduled campaign to serve: create one with `gnomon campaign schedule CONFIG "
            "--cron ...` or `--every ...`" + (f" ({len(ended)} stopped)" if ended else "")
        )
    return live


def serve(
    settings: Settings,
    names: list[str] | None = None,
    *,
    port: int | None = None,
    ui: bool = True,
    poll_s: float = POLL_S,
    server_start_timeout_s: float = 300.0,
) -> None:
    """Serve the scheduled campaigns (all, or those named) until interrupted (Ctrl-C, SIGTERM).

    Uses the Prefect API in force; without one, the workspace's own server (started here,
    stopped on the way out, ``port`` None: a free one).
    """
    campaigns = servable(settings, names)
    # SIGTERM unwinds like Ctrl-C, so the server child is stopped (Prefect's runner installs
    # its own handler, which exits the same way, once it runs)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    url = configured_api_url()
    if url:
        log.info("using the Prefect server of PREFECT_API_URL: API %s, UI %s", url,
                 get_current_settings().ui_url or "unknown")
        _serve(settings, campaigns, own_server=False, poll_s=poll_s)
        return
    server = LocalPrefectServer(
        settings.home / "prefect", port=port, ui=ui, start_timeout_s=server_start_timeout_s
    )
    with server:
        with prefect_api(server.api_url):
            _serve(settings, campaigns, own_server=True, poll_s=poll_s)


def next_run(campaign: Campaign) -> str:
    """When a served campaign runs next, as serve's log says it."""
    if campaign.stop_reason:
        return f"no next run: stopped ({campaign.stop_reason}), its schedule paused"
    return f"next run due {next_due(campaign.schedule).isoformat(timespec='seconds')}"


def _serve(settings: Settings, campaigns: list[Campaign], own_server: bool, poll_s: float) -> None:
    """Register the campaigns' deployments with a runner, catch up, say what is served and
    when, then run until stopped, telling the log of every run as it starts and ends."""
    runner = Runner(
        name=f"gnomon-serve-{socket.gethostname()}-{os.getpid()}",
        query_seconds=poll_s,
        pause_on_shutdown=False,
        limit=None,
    )
    ids: dict[str, UUID] = {}
    for c in campaigns:
        deployment = _deployment(
            CampaignConfig.model_validate(c.config), settings, c.schedule, c.rounds_per_run
        )
        ids[c.name] = runner.add_deployment(deployment)
    catch_up(settings, ids, own_server)
    log.info("serving %s: %s", counted(len(campaigns), "campaign"),
             ", ".join(c.name for c in campaigns))
    for c in campaigns:
        log.info("campaign %s: schedule %s, %s per run; %s", c.name, c.schedule,
                 counted(c.rounds_per_run, "round"), next_run(c))
    repo = open_repository(settings.db_url)
    try:
        watch = RunWatch(repo, [c.name for c in campaigns], next_run)
        watch.prime()
        asyncio.run(_run_until_stopped(runner, watch, poll_s))
    except KeyboardInterrupt:
        log.info("interrupted: serve stops")
    finally:
        repo.close()
        # the runner's last log lines go to the server while it still runs: left queued,
        # they hold the exit while Prefect retries a server that has stopped
        APILogWorker.drain_all(timeout=10)


async def _tell_runs(watch: RunWatch, poll_s: float) -> None:
    """Every ``poll_s``: a log line for each run that started, finished a round or ended."""
    while True:
        await asyncio.sleep(poll_s)
        _log_runs(await asyncio.to_thread(_poll_quietly, watch))


def _poll_quietly(watch: RunWatch) -> list[str]:
    try:
        return watch.poll()
    except (StorageError, OSError) as exc:  # the next poll tries again
        log.warning("could not read the campaigns' run logs: %s", exc)
        return []


def _log_runs(lines: list[str]) -> None:
    for line in lines:
        log.info("%s", line)


async def _run_until_stopped(runner: Any, watch: RunWatch, poll_s: float) -> None:
    """Run Prefect's runner, telling the log of the runs (:class:`RunWatch`); on SIGTERM stop
    it the way Ctrl-C does: runs in progress are cancelled (their rounds resume in the next
    run) and the call returns, after a last look at the run logs.

    Prefect 3.8's own SIGTERM handler calls the runner's stop from inside its event loop,
    where it is never awaited, and exits with the runs' processes still going.
    """
    teller = asyncio.ensure_future(_tell_runs(watch, poll_s))
    try:
        await _runner_until_stopped(runner)
    finally:
        teller.cancel()
        _log_runs(_poll_quietly(watch))


async def _runner_until_stopped(runner: Any) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.ensure_future(runner.start())
    await asyncio.sleep(0)  # start() installs Prefect's handler before its first await; replace it

    async def _stop() -> None:
        log.info("SIGTERM: serve stops, cancelling runs in progress")
        if runner.started:
            await runner.astop()
        main.cancel()

    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(_stop()))
    try:
        await main
    except asyncio.CancelledError:
        pass


def catch_up(settings: Settings, deployments: dict[str, UUID], own_server: bool) -> None:
    """Before serving: due runs missed while nothing served them collapse into one, and (on
    the workspace's own server, which nothing else could have run) runs left Running or
    Pending by a killed ``serve`` are marked Crashed."""
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        for name, deployment_id in deployments.items():
            only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            _collapse_missed(client, settings, name, only, now)
            if own_server:
                _crash_left_over(client, name, only)


def _collapse_missed(client: Any, settings: Settings, name: str, only: DeploymentFilter,
                     now: datetime) -> None:
    """Every due run of the deployment but the last cancelled as Missed, and recorded."""
    due = _all_runs(
        client,
        only,
        FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=now),
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
    )
    missed = due[:-1]
    for run in missed:
        client.set_flow_run_state(
            run.id,
            Cancelled(name="Missed", message="came due while gnomon campaign serve was not "
                      "running; one catch-up run is kept"),
            force=True,
        )
    if not missed:
        return
    log.info("campaign %s: %d runs came due while serve was down; one catch-up run is kept",
             name, len(missed))
    _record(settings, name, f"missed-{missed[0].id}", outcome="missed", count=len(missed),
            started_at=missed[0].expected_start_time.isoformat(),
            finished_at=missed[-1].expected_start_time.isoformat(),
            reason="came due while serve was not running; one catch-up run kept")


def _crash_left_over(client: Any, name: str, only: DeploymentFilter) -> None:
    """Runs of the deployment a killed ``serve`` left Running, Pending or Cancelling, marked
    Crashed."""
    active = [StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]
    left = _all_runs(client, only, FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=active))))
    for run in left:
        client.set_flow_run_state(
            run.id,
            Crashed(message="gnomon campaign serve stopped while it ran; the next run resumes "
                    "the campaign at its first unfinished step"),
            force=True,
        )
        log.warning("campaign %s: run %s was cut short when serve stopped; marked Crashed",
                    name, run.id)


def _all_runs(client: Any, deployments: Any, runs_filter: Any, sort: Any = None) -> list[Any]:
    """Every flow run matching the filters, read page by page (the API returns 200 at most)."""
    out: list[Any] = []
    while True:
        page = client.read_flow_runs(
            deployment_filter=deployments,
            flow_run_filter=runs_filter,
            sort=sort,
            limit=_PAGE,
            offset=len(out),
        )
        out.extend(page)
        if len(page) < _PAGE:
            return out


_PAGE = 200


def _record(settings: Settings, campaign: str, run: str, **fields: Any) -> None:
    repo = open_repository(settings.db_url)
    try:
        runs.record(repo, campaign, run, **fields)
    finally:
        repo.close()


__all__ = [
    "DEPLOYMENT_PREFIX",
    "catch_up",
    "next_due",
    "parse_every",
    "schedule",
    "scheduled",
    "serve",
]
