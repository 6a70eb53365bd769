"""Graph networks that screen candidates: periodic graphs, the GNoME-style GNN, the
composition model, deep ensembles with calibrated uncertainty and test-time augmentation,
training, batched screening and the model registry."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gnomon.models.ensemble import TTA, Ensemble, Normalization, pick_device
    from gnomon.models.errors import ModelNotFound
    from gnomon.models.graphs import GraphRejected, crystal_graph
    from gnomon.models.registry import ModelRegistry
    from gnomon.models.retrain import train_scheme
    from gnomon.models.screening import Screener, ScreenResult, screen_candidates
    from gnomon.models.spec import ModelSpec, TrainConfig
    from gnomon.models.training import Sample, Trainer, evaluate

_HOME = {
    "TTA": "ensemble", "Ensemble": "ensemble", "Normalization": "ensemble",
    "pick_device": "ensemble", "GraphRejected": "graphs", "crystal_graph": "graphs",
    "ModelNotFound": "errors", "ModelRegistry": "registry", "Screener": "screening",
    "ScreenResult": "screening", "screen_candidates": "screening", "ModelSpec": "spec",
    "TrainConfig": "spec", "Sample": "training", "Trainer": "training", "evaluate": "training",
    "train_scheme": "retrain",
}


def __getattr__(name: str) -> Any:
    """Import a name's module on first use, so that reading :mod:`gnomon.models.spec` (the
    settings and the CLI do, for the model's defaults) does not load torch."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "TTA",
    "Ensemble",
    "GraphRejected",
    "ModelNotFound",
    "ModelRegistry",
    "ModelSpec",
    "Normalization",
    "Sample",
    "ScreenResult",
    "Screener",
    "TrainConfig",
    "Trainer",
    "crystal_graph",
    "evaluate",
    "pick_device",
    "screen_candidates",
    "train_scheme",
]
