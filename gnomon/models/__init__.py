"""Graph networks that screen candidates: periodic graphs, the GNoME-style GNN, the
composition model, deep ensembles with calibrated uncertainty and test-time augmentation,
training, batched screening and the model registry."""

from __future__ import annotations

from gnomon.models.ensemble import TTA, Ensemble, ModelSpec, Normalization, pick_device
from gnomon.models.graphs import GraphRejected, crystal_graph
from gnomon.models.registry import ModelNotFound, ModelRegistry
from gnomon.models.screening import Screener, ScreenResult, screen_candidates
from gnomon.models.training import Sample, TrainConfig, Trainer, evaluate, train_scheme

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
