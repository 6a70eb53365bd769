"""The campaign flow: rounds until the configured number, a relaxation budget, or a run of
rounds without a new stable phase. Resuming is running it again: finished rounds and steps
are skipped because the database says they are done."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from gnomon.config import CampaignConfig, Settings
from gnomon.flows.round import round_flow
from gnomon.flows.steps import round_finished
from gnomon.storage import Campaign, Round, open_repository
from gnomon.storage.documents import utcnow

log = logging.getLogger(__name__)


class CampaignError(RuntimeError):
    """A campaign that cannot start or resume as asked."""


def register_campaign(settings: Settings, config: CampaignConfig) -> Campaign:
    """The stored campaign of this name, created on first run; a different config under the
    same name is refused rather than silently mixed into the old campaign's rounds."""
    repo = open_repository(settings.db_url)
    try:
        existing = repo.get(Campaign, config.name)
        doc = config.model_dump(mode="json")
        if existing is None:
            record = Campaign(id=config.name, name=config.name, config=doc, status="running")
            repo.insert_new("campaigns", [record])
            return record
        stored = {k: v for k, v in _current_form(existing.config).items() if k != "rounds"}
        if stored != {k: v for k, v in doc.items() if k != "rounds"}:
            raise CampaignError(
                f"campaign {config.name!r} exists with a different configuration; resume it with "
                f"`gnomon campaign resume {config.name}` or give the new one another name"
            )
        repo.update_fields("campaigns", config.name, {"config": doc, "status": "running", "updated_at": utcnow().isoformat()})
        return repo.get(Campaign, config.name)
    finally:
        repo.close()


def _current_form(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config as today's CampaignConfig writes it: an option added since (with its
    default) does not make an old campaign look different from the same YAML run again."""
    try:
        return CampaignConfig.model_validate(stored).model_dump(mode="json")
    except ValueError:
        return stored


def round_done(settings: Settings, campaign: str, index: int) -> bool:
    repo = open_repository(settings.db_url)
    try:
        return round_finished(repo.get(Round, Round.key(campaign, index)))
    finally:
        repo.close()


def should_stop(settings: Settings, config: CampaignConfig, finished: int) -> str | None:
    """The stopping rule that fired after ``finished`` rounds, if any."""
    repo = open_repository(settings.db_url)
    try:
        rule = config.stopping
        if rule.max_relaxations is not None:
            n = repo.count("calculations", {"campaign": config.name})
            if n >= rule.max_relaxations:
                return f"relaxation budget reached ({n} >= {rule.max_relaxations})"
        if rule.patience is not None and finished >= rule.patience:
            recent = [repo.get(Round, Round.key(config.name, i)) for i in range(finished - rule.patience, finished)]
            if all(r is not None and not r.metrics.get("new_stable") for r in recent):
                return f"no new stable phase in {rule.patience} rounds"
        return None
    finally:
        repo.close()


def _task_runner(config: CampaignConfig):
    if config.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if config.dask_cluster_class:
            return DaskTaskRunner(cluster_class=config.dask_cluster_class, cluster_kwargs=config.dask_cluster_kwargs)
        return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                              **config.dask_cluster_kwargs})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=2)


@flow(name="gnomon-campaign", flow_run_name="{config[name]}")
def campaign_flow(config: dict[str, Any], settings: dict[str, Any], rounds: int | None = None) -> dict[str, Any]:
    """Run (or resume) a campaign; returns its status and the last round's metrics."""
    cfg = CampaignConfig.model_validate(config)
    s = Settings(**settings)
    register_campaign(s, cfg)
    total = rounds or cfg.rounds
    metrics: dict[str, Any] = {}
    stopped = None
    runner = _task_runner(cfg)
    for index in range(total):
        if round_done(s, cfg.name, index):
            continue
        metrics = round_flow.with_options(task_runner=runner)(settings, config, index)
        stopped = should_stop(s, cfg, index + 1)
        if stopped:
            log.info("campaign %s stops: %s", cfg.name, stopped)
            break
    repo = open_repository(s.db_url)
    try:
        status = "stopped" if stopped else "finished"
        repo.update_fields("campaigns", cfg.name, {"status": status, "updated_at": utcnow().isoformat()})
        relaxations = repo.count("calculations", {"campaign": cfg.name})
    finally:
        repo.close()
    return {"status": status, "reason": stopped, "metrics": metrics, "relaxations": relaxations}


def settings_payload(settings: Settings) -> dict[str, Any]:
    """Settings as plain data for flows and tasks (paths as strings, the database URL fixed)."""
    data = settings.model_dump(mode="json")
    data["db"] = settings.db_url
    return data


__all__ = ["CampaignError", "campaign_flow", "settings_payload"]
