"""The campaign flow: rounds until the configured number, a relaxation budget, or a run of
rounds without a new stable phase. Resuming is running it again: finished rounds and steps
are skipped because the database says they are done.

The flow holds its database open for its whole run (:func:`~gnomon.flows.connections.
held_repository`); its helpers and its rounds' in-process tasks use that one repository. The
lease renewer (``gnomon.campaign.runs.Renewer``) writes from a thread of its own with a
connection of its own, so that its heartbeat never joins the flow's transactions.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.runtime import deployment, flow_run
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from gnomon.campaign import runs
from gnomon.campaign.round_steps import round_finished
from gnomon.config import CampaignConfig, Settings, differs_from_stored
from gnomon.dft import engine as dft_engine
from gnomon.flows.connections import held_repository
from gnomon.flows.database import settings_from_payload, settings_payload
from gnomon.flows.logs import follow_parent_console
from gnomon.flows.round import round_flow
from gnomon.storage import Campaign, Repository, Round
from gnomon.storage.documents import utcnow

log = logging.getLogger(__name__)
follow_parent_console()  # a flow run that serve started logs as quietly as serve


class CampaignError(RuntimeError):
    """A campaign that cannot start or resume as asked."""


def register_campaign(settings: Settings, config: CampaignConfig) -> Campaign:
    """The stored campaign of this name, created on first run; a different config under the
    same name is refused rather than silently mixed into the old campaign's rounds."""
    with held_repository(settings.db_url) as repo:
        return register(repo, config)


def register(repo: Repository, config: CampaignConfig) -> Campaign:
    """:func:`register_campaign` in an open repository."""
    existing = repo.get(Campaign, config.name)
    doc = config.model_dump(mode="json")
    if existing is None:
        record = Campaign(id=config.name, name=config.name, config=doc, status="running")
        repo.insert_new("campaigns", [record])
        return record
    if differs_from_stored(existing.config, config):
        raise CampaignError(
            f"campaign {config.name!r} exists with a different configuration; resume it with "
            f"`gnomon campaign resume {config.name}` or give the new one another name"
        )
    repo.update_fields("campaigns", config.name, {"config": doc, "status": "running",
                                                  "updated_at": utcnow().isoformat()})
    return repo.get(Campaign, config.name)


def round_done(settings: Settings, campaign: str, index: int) -> bool:
    with held_repository(settings.db_url) as repo:
        return round_finished(repo.get(Round, Round.key(campaign, index)))


def should_stop(settings: Settings, config: CampaignConfig, finished: int) -> str | None:
    """The stopping rule that fired after ``finished`` rounds, if any."""
    with held_repository(settings.db_url) as repo:
        return stop_reason(repo, settings, config, finished)


def stop_reason(repo: Repository, settings: Settings, config: CampaignConfig,
                finished: int) -> str | None:
    """:func:`should_stop` in an open repository."""
    rule = config.stopping
    if rule.max_relaxations is not None:
        # with an mlip stage the budget is the campaign engine's (DFT) relaxations
        n = repo.count("calculations", {"campaign": config.name,
                                        **_engine_scheme(settings, config)})
        if n >= rule.max_relaxations:
            return f"relaxation budget reached ({n} >= {rule.max_relaxations})"
    if rule.patience is not None and finished >= rule.patience:
        recent = [repo.get(Round, Round.key(config.name, i))
                  for i in range(finished - rule.patience, finished)]
        if all(r is not None and not r.metrics.get("new_stable") for r in recent):
            return f"no new stable phase in {rule.patience} rounds"
    return None


def _engine_scheme(settings: Settings, config: CampaignConfig) -> dict[str, str]:
    """A filter on the campaign engine's scheme when stages share the campaign's
    calculations."""
    if not config.staged:
        return {}
    engine = dft_engine.make_engine(config.engine.name, settings, **config.engine.options)
    return {"scheme": engine.scheme}


def _task_runner(config: CampaignConfig) -> Any:
    if config.task_runner == "dask":
        from prefect_dask import DaskTaskRunner  # heavy: dask, distributed

        if config.dask_cluster_class:
            return DaskTaskRunner(cluster_class=config.dask_cluster_class,
                                  cluster_kwargs=config.dask_cluster_kwargs)
        return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1,
                                              "processes": True, **config.dask_cluster_kwargs})
    return ThreadPoolTaskRunner(max_workers=2)


@flow(name="gnomon-campaign", flow_run_name="{config[name]}")
def campaign_flow(config: dict[str, Any], settings: dict[str, Any], rounds: int | None = None,
                  rounds_per_run: int | None = None) -> Any:
    """Run (or resume) a campaign; returns its status and the last round's metrics.

    ``rounds_per_run`` is how a scheduled run (``gnomon campaign serve``) calls it: that many
    more rounds, see :func:`scheduled_run`. Either way the run holds the campaign's lease
    (``gnomon.campaign.runs``), so two runs of one campaign never work at the same time.
    """
    cfg = CampaignConfig.model_validate(config)
    s = settings_from_payload(settings)
    with held_repository(s.db_url) as repo:
        if rounds_per_run is not None:
            return scheduled_run(cfg, s, settings, rounds_per_run)
        register(repo, cfg)
        return _run_rounds(repo, cfg, s, (settings, config), rounds or cfg.rounds)


def _run_rounds(repo: Repository, cfg: CampaignConfig, s: Settings,
                payload: tuple[dict[str, Any], dict[str, Any]], total: int) -> dict[str, Any]:
    """Rounds ``0..total-1`` that are not finished yet, under the campaign's lease, until a
    stopping rule fires; the campaign's status stored at the end."""
    metrics: dict[str, Any] = {}
    stopped = None
    runner = _task_runner(cfg)
    holder = _lease_or_fail(repo, cfg.name)
    done: list[int] = []
    try:
        with runs.Renewer(s.db_url, cfg.name, holder):
            for index in range(total):
                if round_finished(repo.get(Round, Round.key(cfg.name, index))):
                    continue
                metrics = round_flow.with_options(task_runner=runner)(*payload, index)
                done.append(index)
                stopped = stop_reason(repo, s, cfg, index + 1)
                if stopped:
                    log.info("campaign %s stops: %s", cfg.name, stopped)
                    break
    except BaseException as exc:  # noqa: BLE001 - recorded on the run, then raised again
        runs.release(repo, cfg.name, holder, outcome="failed", rounds=done,
                     reason=f"{type(exc).__name__}: {exc}")
        raise
    status = "stopped" if stopped else "finished"
    repo.update_fields("campaigns", cfg.name, {"status": status, "stop_reason": stopped,
                                               "updated_at": utcnow().isoformat()})
    relaxations = repo.count("calculations", {"campaign": cfg.name})
    runs.release(repo, cfg.name, holder, outcome=status, rounds=done, reason=stopped)
    return {"status": status, "reason": stopped, "metrics": metrics, "relaxations": relaxations}


def _run_id() -> str:
    """This flow run's id (Prefect's), or a fresh one outside a flow run."""
    return str(flow_run.id or uuid.uuid4())


def _lease_or_fail(repo: Repository, campaign: str) -> runs.Holder:
    try:
        return runs.acquire(repo, campaign, _run_id())
    except runs.LeaseHeld as exc:
        hint = "wait for it to finish (or stop `gnomon campaign serve`)"
        raise CampaignError(f"{exc}; {hint}") from None


def first_unfinished(repo: Any, campaign: str) -> int:
    """The index of the campaign's first round that is not finished (rounds run in order)."""
    finished = {r.index for r in repo.query(Round, {"campaign": campaign}) if round_finished(r)}
    index = 0
    while index in finished:
        index += 1
    return index


def scheduled_run(cfg: CampaignConfig, s: Settings, settings: dict[str, Any],
                  rounds_per_run: int) -> Any:
    """One scheduled run: ``rounds_per_run`` more rounds, until the stopping rules end it.

    The run first takes the campaign's lease; if an earlier run still holds it this run does
    nothing and ends in a Completed state named Skipped, with the reason (also recorded in
    ``Campaign.runs``).
    A round an earlier run left unfinished is the first one done, from its first unfinished
    step. ``rounds`` of the config does not limit scheduled runs (a nightly campaign goes on
    discovering); its stopping rules do: once one fires, the reason is stored on the campaign,
    its deployment's schedule is paused, and later runs do nothing.
    """
    run_id = _run_id()
    with held_repository(s.db_url) as repo:
        if repo.get(Campaign, cfg.name) is None:
            register(repo, cfg)
        try:
            holder = runs.acquire(repo, cfg.name, run_id)
        except runs.LeaseHeld as exc:
            log.info("%s; this run is skipped", exc)
            return Completed(name="Skipped", message=f"skipped: {exc}")
        reason = repo.get(Campaign, cfg.name).stop_reason
        if reason:
            runs.release(repo, cfg.name, holder, outcome="skipped",
                         reason=f"campaign stopped: {reason}")
            _pause_own_deployment(cfg.name, reason)
            return Completed(name="Skipped",
                             message=f"skipped: campaign {cfg.name} stopped: {reason}")
        result = _scheduled_rounds(repo, cfg, s, settings, rounds_per_run, holder, run_id)
    if result["reason"]:
        log.info("campaign %s stops: %s", cfg.name, result["reason"])
        _pause_own_deployment(cfg.name, result["reason"])
    return result


def _scheduled_rounds(repo: Repository, cfg: CampaignConfig, s: Settings,
                      settings: dict[str, Any], rounds_per_run: int, holder: runs.Holder,
                      run_id: str) -> dict[str, Any]:
    """The rounds of one scheduled run, under the lease ``holder``; the run recorded and the
    lease released at the end, however it ends."""
    done: list[int] = []
    try:
        register(repo, cfg)
        index = first_unfinished(repo, cfg.name)
        stopped = stop_reason(repo, s, cfg, index)
        metrics: dict[str, Any] = {}
        runner = _task_runner(cfg)
        with runs.Renewer(s.db_url, cfg.name, holder) as renewer:
            while not stopped and len(done) < rounds_per_run and not renewer.lost.is_set():
                metrics = round_flow.with_options(task_runner=runner)(
                    settings, cfg.model_dump(mode="json"), index)
                done.append(index)
                runs.record(repo, cfg.name, run_id, rounds=done)
                stopped = stop_reason(repo, s, cfg, index + 1)
                index += 1
    except BaseException as exc:  # noqa: BLE001 - recorded on the run, then raised again
        outcome = "failed" if isinstance(exc, Exception) else "interrupted"  # a signal, Ctrl-C
        runs.release(repo, cfg.name, holder, outcome=outcome, rounds=done,
                     reason=f"{type(exc).__name__}: {exc}")
        raise
    status = "stopped" if stopped else "scheduled"
    repo.update_fields("campaigns", cfg.name, {"status": status, "stop_reason": stopped,
                                               "updated_at": utcnow().isoformat()})
    runs.release(repo, cfg.name, holder, outcome="stopped" if stopped else "completed",
                 rounds=done, reason=stopped)
    relaxations = repo.count("calculations", {"campaign": cfg.name})
    return {"status": status, "reason": stopped, "metrics": metrics, "relaxations": relaxations,
            "rounds": done}


def _pause_own_deployment(campaign: str, reason: str) -> None:
    """Pause the schedule of the deployment this run came from: the campaign has ended."""
    if not deployment.id:
        return
    try:
        with get_client(sync_client=True) as client:
            client.pause_deployment(deployment.id)
    except (ObjectNotFound, PrefectHTTPStatusError, OSError) as exc:
        log.warning("campaign %s stopped (%s) but its schedule could not be paused: %s",
                    campaign, reason, exc)
        return
    log.info("campaign %s stopped (%s): schedule of its deployment paused", campaign, reason)


__all__ = ["CampaignError", "campaign_flow", "register_campaign", "settings_payload"]
