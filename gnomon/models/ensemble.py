"""Deep ensembles: K independently initialised networks, their mean and calibrated spread.

An :class:`Ensemble` owns its members, the normalisation they were trained under (per-element
reference energies plus a shift and scale of the residual) and the σ scale fitted on held-out
data. It maps a batch to energies per atom in eV; :class:`TTA` adds test-time augmentation
over isotropic volume scalings without rebuilding graphs: one neighbour list, built out to
``cutoff / min length factor``, serves every scaling, because scaling a cell scales every
distance and the smooth envelope switches off edges that leave the cutoff.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gnomon.models.composition import CompositionNet
from gnomon.models.gnn import GNoMENet
from gnomon.models.graph_data import Data, scatter
from gnomon.models.peers import PEERS
from gnomon.models.spec import ModelSpec as ModelSpec  # re-exported: its old home

log = logging.getLogger(__name__)

FORMAT = "gnomon-ensemble/1"
KINDS = ("gnn", "composition", *PEERS)  # peers: SchNet and CGCNN, see gnomon.models.peers


class IncompatibleWeights(ValueError):
    """A saved ensemble whose weights this version's networks cannot take."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if device is not None and str(device) != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision on CUDA (bfloat16 where supported, else float16); nothing on CPU."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@dataclass
class Normalization:
    """E/N = Σ_el x_el μ_el + shift + scale · network output."""

    element_refs: np.ndarray  # (num_elements + 1,) eV/atom, 0 for elements never seen
    seen: np.ndarray  # (num_elements + 1,) bool: elements present in the training data
    shift: float = 0.0
    scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "element_refs": [float(x) for x in self.element_refs],
            "seen": [bool(x) for x in self.seen],
            "shift": float(self.shift),
            "scale": float(self.scale),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        return cls(
            np.asarray(d["element_refs"], dtype=np.float64),
            np.asarray(d["seen"], dtype=bool),
            float(d["shift"]),
            float(d["scale"]),
        )


@dataclass(frozen=True)
class TTA:
    """Test-time augmentation over isotropic volume scalings, aggregated by ``min`` or ``mean``.

    Each member's energy is aggregated over the scalings first; the ensemble's mean and spread
    are then taken over members.
    """

    volume_scales: tuple[float, ...] = (0.92, 0.96, 1.0, 1.04, 1.08)
    aggregate: str = "min"

    def __post_init__(self):
        if self.aggregate not in ("min", "mean"):
            raise ValueError(f"TTA aggregate must be 'min' or 'mean', not {self.aggregate!r}")
        if not self.volume_scales or min(self.volume_scales) <= 0:
            raise ValueError("TTA volume scales must be positive")

    @property
    def length_factors(self) -> list[float]:
        return [s ** (1.0 / 3.0) for s in self.volume_scales]

    def graph_cutoff(self, cutoff: float) -> float:
        """How far the neighbour list must reach so the smallest scaling misses no edge."""
        return cutoff / min(1.0, min(self.length_factors))


def build_member(kind: str, hparams: dict[str, Any]) -> nn.Module:
    if kind == "gnn":
        return GNoMENet(**hparams)
    if kind == "composition":
        return CompositionNet(**hparams)
    if kind in PEERS:
        return PEERS[kind](**hparams)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")


@dataclass
class EnsembleOutput:
    mean: np.ndarray  # (G,) eV/atom
    sigma: np.ndarray  # (G,) eV/atom, calibrated
    members: np.ndarray  # (K, G) eV/atom


class Ensemble(nn.Module):
    """K members of one kind sharing hyperparameters, normalisation and calibration."""

    def __init__(
        self,
        kind: str,
        hparams: dict[str, Any],
        members: list[nn.Module],
        normalization: Normalization,
        sigma_scale: float = 1.0,
        calibration: dict[str, Any] | None = None,
        train_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.kind = kind
        self.hparams = dict(hparams)
        self.members = nn.ModuleList(members)
        self.normalization = normalization
        self.sigma_scale = float(sigma_scale)
        self.calibration = dict(calibration or {})
        self.train_config = dict(train_config or {})
        self.register_buffer(
            "element_refs", torch.tensor(normalization.element_refs, dtype=torch.float32)
        )

    # -- construction and persistence ----------------------------------------------------
    @classmethod
    def create(
        cls, kind: str, hparams: dict[str, Any], size: int, normalization: Normalization,
        seeds: list[int],
    ) -> Ensemble:
        members = []
        for seed in seeds[:size]:
            torch.manual_seed(seed)
            members.append(build_member(kind, hparams))
        return cls(kind, hparams, members, normalization)

    def set_normalization(self, normalization: Normalization) -> None:
        self.normalization = normalization
        self.element_refs.copy_(torch.tensor(normalization.element_refs, dtype=torch.float32))

    @property
    def cutoff(self) -> float:
        return float(self.hparams.get("cutoff", 0.0))

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def device(self) -> torch.device:
        return self.element_refs.device

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild this ensemble; loadable with ``weights_only=True``."""
        return {
            "format": FORMAT,
            "kind": self.kind,
            "hparams": dict(self.hparams),
            "members": [
                {k: v.detach().cpu() for k, v in m.state_dict().items()} for m in self.members
            ],
            "normalization": self.normalization.to_dict(),
            "sigma_scale": self.sigma_scale,
            "calibration": dict(self.calibration),
            "train_config": dict(self.train_config),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Ensemble:
        if state.get("format") != FORMAT:
            raise ValueError(f"not a gnomon ensemble file (format {state.get('format')!r})")
        members = []
        for weights in state["members"]:
            member = build_member(state["kind"], state["hparams"])
            expected, saved = set(member.state_dict()), set(weights)
            if expected != saved:
                raise IncompatibleWeights(
                    f"weights do not fit this version's {state['kind']} network (missing "
                    f"{sorted(expected - saved)[:3]}, unexpected {sorted(saved - expected)[:3]}): "
                    "saved by an older gnomon; retrain it (gnomon model train --retrain scratch)"
                )
            try:
                member.load_state_dict(weights)
            except RuntimeError as exc:  # same names, other shapes
                raise IncompatibleWeights(
                    f"weights do not fit the saved hyperparameters: {exc}") from None
            members.append(member)
        ens = cls(
            state["kind"],
            state["hparams"],
            members,
            Normalization.from_dict(state["normalization"]),
            state.get("sigma_scale", 1.0),
            state.get("calibration"),
            state.get("train_config"),
        )
        return ens.eval()

    def save(self, path) -> None:
        torch.save(self.state(), path)

    @classmethod
    def load(cls, path, device: str | torch.device | None = "cpu") -> Ensemble:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls.from_state(state).to(pick_device(device))

    # -- prediction -----------------------------------------------------------------------
    def reference(self, batch: Data) -> Tensor:
        """Σ_el x_el μ_el per graph (eV/atom)."""
        if self.kind == "composition":
            return batch.fractions @ self.element_refs
        return scatter(
            self.element_refs[batch.z], batch.batch, dim=0, dim_size=batch.num_graphs, reduce="mean"
        )

    def member_outputs(self, batch: Data, length_factor: float = 1.0,
                       members: Sequence[int] | None = None) -> Tensor:
        """Normalised outputs of every member (or of ``members``, by index), shape (K, G)."""
        chosen = self.members if members is None else [self.members[i] for i in members]
        if self.kind == "composition":
            return torch.stack([m(batch.fractions) for m in chosen])
        dist = batch.dist if length_factor == 1.0 else batch.dist * length_factor
        edges = self.members[0].edge_inputs(dist, batch.edge_index, int(batch.z.shape[0]))
        return torch.stack(
            [m(batch.z, batch.edge_index, dist, batch.batch, batch.num_graphs, edges)
             for m in chosen]
        )

    def energies(self, batch: Data, tta: TTA | None = None, amp: bool = True,
                 members: Sequence[int] | None = None) -> Tensor:
        """Energy per atom (eV) of each member (or of ``members``), shape (K, G),
        TTA-aggregated when given."""
        norm = self.normalization
        with autocast(self.device, amp):
            if tta is None or self.kind == "composition":
                out = self.member_outputs(batch, members=members).float()
            else:
                per_scale = torch.stack(
                    [self.member_outputs(batch, f, members).float() for f in tta.length_factors]
                )
                out = per_scale.amin(0) if tta.aggregate == "min" else per_scale.mean(0)
        return self.reference(batch).unsqueeze(0) + norm.shift + norm.scale * out

    @torch.inference_mode()
    def predict(self, batch: Data, tta: TTA | None = None, amp: bool = True,
                members: Sequence[int] | None = None) -> EnsembleOutput:
        """Mean and calibrated σ (eV/atom) over members (or over ``members``; one member has
        σ 0) for a collated batch."""
        self.eval()
        batch = batch.to(self.device)
        e = self.energies(batch, tta, amp, members)
        mean = e.mean(0)
        std = e.std(0, unbiased=False) if e.shape[0] > 1 else torch.zeros_like(mean)
        return EnsembleOutput(
            mean.double().cpu().numpy(),
            (self.sigma_scale * std).double().cpu().numpy(),
            e.double().cpu().numpy(),
        )
