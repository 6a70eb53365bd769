"""What a new ensemble is (:class:`ModelSpec`) and how it is trained (:class:`TrainConfig`).

These two dataclasses are the one place the model's defaults are written. They import no torch,
so the campaign settings (:mod:`gnomon.config`) and the command line read their defaults from
here without loading the networks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PEER_KINDS = ("schnet", "cgcnn")
"""The published architectures gnomon trains beside its own (:mod:`gnomon.models.peers`)."""

GAUSSIAN_STEP = 0.2
"""Spacing (Å) of the Gaussian distance basis of both peers: CGCNN's published step, and the
spacing of torch-geometric's SchNet default (50 Gaussians over 10 Å)."""


def num_gaussians_for(cutoff: float, step: float = GAUSSIAN_STEP) -> int:
    """Gaussians centred at 0, step, ..., cutoff."""
    return int(round(cutoff / step)) + 1


def peer_hparams(
    kind: str, hidden: int, num_layers: int, cutoff: float, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A peer's hyperparameters from the shared model spec.

    Width, depth and cutoff follow the spec, so every model of a benchmark sees the same
    graphs with the same capacity knobs; the rest are each paper's choices (Gaussian basis step
    0.2 Å, CGCNN's 12 neighbours and a fully connected layer twice as wide as the atom
    features). ``extra`` overrides any of them.
    """
    if kind == "schnet":
        base: dict[str, Any] = dict(
            hidden=hidden, num_filters=hidden, num_layers=num_layers,
            num_gaussians=num_gaussians_for(cutoff), cutoff=float(cutoff),
        )
    elif kind == "cgcnn":
        base = dict(
            hidden=hidden, num_layers=num_layers, fc_hidden=2 * hidden, cutoff=float(cutoff),
            max_neighbors=12, gaussian_step=GAUSSIAN_STEP,
        )
    else:
        raise ValueError(f"unknown peer kind {kind!r}; expected one of {PEER_KINDS}")
    base.update(extra or {})
    return base


@dataclass
class ModelSpec:
    """Hyperparameters of a new ensemble (what ``gnomon model train`` exposes)."""

    kind: str = "gnn"
    hidden: int = 48
    num_layers: int = 3
    num_radial: int = 16
    cutoff: float = 5.0
    readout: str = "sum"
    extra: dict[str, Any] = field(default_factory=dict)

    def hparams(self, avg_num_neighbors: float) -> dict[str, Any]:
        if self.kind not in ("gnn", "composition"):
            return peer_hparams(self.kind, self.hidden, self.num_layers, self.cutoff, self.extra)
        if self.kind == "composition":
            return dict(hidden=self.hidden, num_layers=max(1, self.num_layers - 1), **self.extra)
        return dict(
            hidden=self.hidden,
            num_layers=self.num_layers,
            num_radial=self.num_radial,
            cutoff=self.cutoff,
            avg_num_neighbors=float(avg_num_neighbors),
            readout=self.readout,
            **self.extra,
        )


@dataclass
class TrainConfig:
    """How an ensemble is trained (recorded with the model version)."""

    ensemble_size: int = 5
    seed: int = 0
    bootstrap: bool = False
    max_epochs: int = 300
    patience: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-5
    huber_delta: float = 0.1
    val_fraction: float = 0.15
    test_fraction: float = 0.0
    group_by: str = "composition"  # or "chemsys"
    ridge: float = 1e-6
    device: str | None = None  # None: CUDA when present
    amp: bool = True
    threads: int | None = None
    checkpoint_dir: str | None = None
    fine_tune_lr_factor: float = 0.3
    val_kinds: tuple[str, ...] = ()  # validate on these sample kinds only (): all

    def __post_init__(self) -> None:
        if self.group_by not in ("composition", "chemsys"):
            raise ValueError(f"group_by must be 'composition' or 'chemsys', not {self.group_by!r}")
        if self.ensemble_size < 1:
            raise ValueError("ensemble_size must be at least 1")
        if self.max_epochs < 1:
            raise ValueError("max_epochs must be at least 1 (the best epoch's weights are kept)")
