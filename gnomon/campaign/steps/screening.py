"""The ``screen`` step, and which model screens a round (also the streaming funnel's)."""

from __future__ import annotations

import logging
from typing import Any

from gnomon.campaign.round_steps import with_current_step_names
from gnomon.campaign.steps.context import RoundContext
from gnomon.campaign.steps.distilling import distilled
from gnomon.models.pretrained import is_pretrained
from gnomon.models.transfer import start_model
from gnomon.storage import Candidate, ModelVersion, Round

log = logging.getLogger(__name__)


def screening_model(ctx: RoundContext) -> ModelVersion | None:
    """The model that screens this round.

    The one this round's streaming funnel already screened with (a round is judged by one
    model, even when resumed after another was registered). Else the campaign's newest:
    retrained in an earlier round, else the one an earlier round screened with. Before the
    campaign has one, its start (``model.start_from``): the pretrained model shipped with
    gnomon, carried over to the campaign's scheme when that is another
    (``gnomon.models.transfer.start_model``); with ``scratch``, or when none ships, the newest
    model of the scheme trained before the campaign (never the shipped one), if any.
    """
    funnel_version = (ctx.outputs("dedup").get("funnel") or {}).get("model_version")
    record = ctx.repo.get(ModelVersion, funnel_version) if funnel_version else None
    if record is not None:
        return record
    for r in reversed(range(ctx.index)):
        earlier = ctx.repo.get(Round, Round.key(ctx.campaign, r))
        out = with_current_step_names(earlier).outputs if earlier is not None else {}
        version = (out.get("retrain", {}).get("model_version")
                   or out.get("screen", {}).get("model_version"))
        record = ctx.repo.get(ModelVersion, version) if version else None
        if record is not None:
            return record
    if ctx.config.model.start_from == "pretrained":
        record = start_model(ctx.repo, ctx.settings.models_dir, ctx.scheme,
                             campaign=ctx.campaign, round=ctx.index)
        if record is not None:
            return record
    own = [m for m in ctx.repo.query(ModelVersion, {"scheme": ctx.scheme, "kind": "gnn"})
           if not is_pretrained(m) and m.config.get("retrain") != "transfer"]
    return max(own, key=lambda m: m.created_at) if own else None


def streaming_model(ctx: RoundContext) -> ModelVersion | None:
    """The model a streaming round screens its funnel with; None when the round does not
    stream (``funnel.enabled`` off, or no model yet: such a round stores its unique candidates
    the usual way)."""
    if not (ctx.config.funnel.enabled and "screen" in ctx.config.stages):
        return None
    return screening_model(ctx)


def streams(ctx: RoundContext) -> bool:
    """Whether this round runs the streaming funnel (see :func:`streaming_model`)."""
    return streaming_model(ctx) is not None


def screen(ctx: RoundContext) -> dict[str, Any]:
    """Predictions for the round's unique candidates not predicted yet by its model, through
    the round's fan-out (in-process, or chunks on a cluster's workers)."""
    record = screening_model(ctx)
    ids = ctx.outputs("dedup").get("unique", [])
    if record is not None and ctx.index == 0 and ctx.config.model.distill:
        record = distilled(ctx, record)
    if record is None:
        log.info("round %d: no model for %s yet; selection falls back to exploration",
                 ctx.index, ctx.scheme)
        return {"model_version": None, "screened": 0}
    done = set(ctx.repo.predictions_for(ids, record.id))
    todo = [c for c in ctx.repo.query(Candidate, {"id": ids}) if c.id not in done]
    stats = ctx.fan_out.screen(ctx.repo, todo, record, ctx.settings.models_dir, ctx.scheme,
                               tta=ctx.config.model.tta, campaign=ctx.campaign, round=ctx.index)
    return {"model_version": record.id, "screened": len(done) + stats.written,
            "rejected": stats.reasons}
