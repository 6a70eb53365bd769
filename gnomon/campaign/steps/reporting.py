"""The ``report`` step: the campaign's report rewritten with this round, and the round
counted as done on the campaign."""

from __future__ import annotations

from typing import Any

from gnomon.campaign.reports import write_report
from gnomon.campaign.steps.context import RoundContext
from gnomon.storage import Campaign
from gnomon.storage.documents import utcnow


def report(ctx: RoundContext) -> dict[str, Any]:
    path = write_report(ctx.repo, ctx.settings, ctx.config, scheme=ctx.scheme)
    campaign = ctx.repo.get(Campaign, ctx.campaign)
    if campaign is not None:
        done = max(campaign.rounds_done, ctx.index + 1)
        ctx.repo.update_fields("campaigns", ctx.campaign,
                               {"rounds_done": done, "updated_at": utcnow().isoformat()})
    return {"report": str(path)}
