"""The ``retrain`` step: the next model of the campaign's scheme, from what it has learned."""

from __future__ import annotations

from typing import Any

from gnomon.campaign.steps.context import RoundContext
from gnomon.models.retrain import train_scheme
from gnomon.models.spec import ModelSpec, TrainConfig


def retrain(ctx: RoundContext) -> dict[str, Any]:
    """Fine-tune the model that screened this round (the pretrained one, or its transfer, in
    round 0) on every entry of the scheme; without one, train from scratch. Nothing while the
    scheme has fewer than ``model.min_entries`` entries."""
    cfg = ctx.config.model
    n = ctx.repo.count("entries", {"scheme": ctx.scheme})
    if n < cfg.min_entries:
        return {"model_version": None, "reason": f"{n} entries < min_entries={cfg.min_entries}"}
    parent = ctx.outputs("screen").get("model_version")
    record, _ = train_scheme(
        ctx.repo, ctx.settings.models_dir, ctx.scheme,
        ModelSpec(hidden=cfg.hidden, num_layers=cfg.layers, cutoff=cfg.cutoff),
        TrainConfig(ensemble_size=cfg.ensemble_size, seed=ctx.seed("train"),
                    max_epochs=cfg.max_epochs, patience=cfg.patience, threads=1),
        retrain=cfg.retrain if parent else "scratch", campaign=ctx.campaign, round=ctx.index,
        parent=parent,
    )
    scalars = {k: v for k, v in record.metrics.items()
               if isinstance(v, (int, float, str)) or v is None}
    return {"model_version": record.id, "parent": record.parent, "metrics": scalars}
