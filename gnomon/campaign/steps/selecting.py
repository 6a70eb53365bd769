"""The ``select`` step: the round's relaxations, picked by the campaign's selection policy
(configured in :mod:`gnomon.campaign.selection`)."""

from __future__ import annotations

from typing import Any

from gnomon.campaign.selection import Scored, selection_policy
from gnomon.campaign.steps.context import RoundContext
from gnomon.storage import Candidate


def select(ctx: RoundContext) -> dict[str, Any]:
    """Pick the round's relaxations; a random draw while no model has screened anything."""
    ids = ctx.outputs("dedup").get("unique", [])
    version = ctx.outputs("screen").get("model_version")
    candidates = {c.id: c for c in ctx.repo.query(Candidate, {"id": ids})}
    preds = ctx.repo.predictions_for(ids, version) if version else {}
    scored = []
    for cid in ids:
        if cid not in candidates:
            continue
        c, p = candidates[cid], preds.get(cid)
        scored.append(Scored(cid, p.e_above_hull if p is not None else None,
                             p.sigma if p is not None else 0.0,
                             group=c.template_id or c.reduced_formula, system=c.chemsys))
    policy = selection_policy(ctx.config, None if version else "random")
    chosen = policy.select(scored, round_index=ctx.index)
    return {"policy": policy.name, "selected": [c.candidate_id for c in chosen]}
