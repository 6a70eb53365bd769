"""Schedules: campaigns as Prefect deployments, served by a long-running process.

``schedule`` registers a deployment of the campaign flow with a cron schedule (it shows up
in ``prefect deployment ls`` and in the Prefect UI when PREFECT_API_URL points at a server)
and records the cron on the campaign; ``serve`` runs every scheduled campaign's deployment
in this process, starting flow runs when their schedule comes due.
"""

from __future__ import annotations

from typing import Any

from gnomon.config import CampaignConfig, Settings
from gnomon.flows.campaign import campaign_flow, register_campaign, settings_payload
from gnomon.storage import Campaign, open_repository

DEPLOYMENT_PREFIX = "gnomon-campaign"


def _deployment(config: CampaignConfig, settings: Settings, cron: str):
    return campaign_flow.to_deployment(
        name=config.name,
        cron=cron,
        parameters={"config": config.model_dump(mode="json"), "settings": settings_payload(settings)},
        description=f"gnomon discovery campaign {config.name} in {config.chemsys}",
        tags=["gnomon", config.chemsys],
    )


def validate_cron(cron: str) -> str:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise ValueError(f"{cron!r} is not a valid cron expression (five fields, e.g. '0 2 * * *')") from None
    return cron


def schedule(config: CampaignConfig, settings: Settings, cron: str) -> Any:
    """Create (or update) the campaign's deployment; returns its id."""
    validate_cron(cron)
    register_campaign(settings, config)
    deployment_id = _deployment(config, settings, cron).apply()
    repo = open_repository(settings.db_url)
    try:
        repo.update_fields("campaigns", config.name, {"schedule": cron, "status": "scheduled"})
    finally:
        repo.close()
    return deployment_id


def scheduled(settings: Settings) -> list[Campaign]:
    repo = open_repository(settings.db_url)
    try:
        return [c for c in repo.query(Campaign) if c.schedule]
    finally:
        repo.close()


def serve(settings: Settings, names: list[str] | None = None) -> None:
    """Serve the scheduled campaigns (all, or those named) until interrupted."""
    from prefect import serve as prefect_serve

    campaigns = [c for c in scheduled(settings) if not names or c.name in names]
    if not campaigns:
        raise ValueError("no scheduled campaigns: create one with `gnomon campaign schedule CONFIG --cron ...`")
    prefect_serve(*[_deployment(CampaignConfig.model_validate(c.config), settings, c.schedule) for c in campaigns])
