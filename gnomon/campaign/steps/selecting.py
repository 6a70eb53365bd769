"""The ``select`` step: the round's relaxations, picked by the campaign's selection policy
(configured in :mod:`gnomon.campaign.selection`)."""

from __future__ import annotations

import random
from dataclasses import replace
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
    name = None if version else "random"
    policy = selection_policy(ctx.config, name)
    chosen = [c.candidate_id for c in policy.select(scored, round_index=ctx.index)]
    out: dict[str, Any] = {"policy": policy.name, "selected": chosen}
    if ctx.config.staged and ctx.config.mlip_fill:
        out["reserve"] = reserve(ctx, scored, chosen, name)
    if ctx.config.staged and ctx.config.mlip_unscreened and version:
        out["unscreened"] = unscreened(ctx, scored, chosen)
    return out


def unscreened(ctx: RoundContext, scored: list[Scored], chosen: list[str]) -> list[str]:
    """Up to ``mlip_unscreened`` of the candidates the screen could not judge (no predicted
    e_above_hull: an element its model never saw, a cell it cannot read), drawn with the
    round's seed. The policy never picks them; the mlip stage relaxes them beside the
    selection, since its universal potential knows the chemistry the screen does not."""
    taken = set(chosen)
    pool = sorted(c.candidate_id for c in scored
                  if c.e_above_hull is None and c.candidate_id not in taken)
    rng = random.Random(ctx.seed("unscreened"))
    return rng.sample(pool, min(len(pool), ctx.config.mlip_unscreened))


def reserve(ctx: RoundContext, scored: list[Scored], chosen: list[str],
            name: str | None) -> list[str]:
    """What the mlip stage may relax after ``chosen`` when too few pass its gate
    (``mlip_fill``): the same policy's picks at ``1 + mlip_fill`` times the budget, ``chosen``
    left out, in the policy's order. The selection itself is unchanged by it."""
    fill = ctx.config.mlip_fill
    wider = replace(selection_policy(ctx.config, name),
                    budget=ctx.config.selection.budget * (1 + fill))
    taken = set(chosen)
    more = [c.candidate_id for c in wider.select(scored, round_index=ctx.index)]
    return [cid for cid in more if cid not in taken][: ctx.config.selection.budget * fill]
