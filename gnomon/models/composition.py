"""The composition-only model: fractional composition in, energy per atom out.

It serves the compositional pipeline, where only a formula is known. An element's learned
embedding is weighted by its atomic fraction, pooled, and read out by an MLP:

    E / N = ψ( Σ_el x_el · φ(Embed(el), x_el) )

The input is a dense (num_graphs, num_elements + 1) matrix of fractions, built in one
vectorised step from a batch of compositions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gnomon.models.gnn import _reset, mlp
from gnomon.models.graphs import ATOMIC_NUMBER, MAX_Z, SYMBOL, GraphRejected


def fraction_matrix(
    compositions: Sequence[Mapping[str, float]], num_elements: int = MAX_Z
) -> np.ndarray:
    """Rows of atomic fractions indexed by atomic number (column 0 unused)."""
    out = np.zeros((len(compositions), num_elements + 1), dtype=np.float32)
    for row, comp in enumerate(compositions):
        total = float(sum(comp.values()))
        if total <= 0:
            raise GraphRejected("empty composition")
        for el, amount in comp.items():
            z = ATOMIC_NUMBER.get(str(el))
            if z is None or z > num_elements:
                raise GraphRejected(
                    f"unsupported element {el} (supported: H to {SYMBOL[num_elements]})"
                )
            out[row, z] += amount / total
    return out


class CompositionNet(nn.Module):
    """Energy per atom from fractional composition (normalised units, like :class:`GNoMENet`)."""

    def __init__(self, hidden: int = 64, num_layers: int = 2, num_elements: int = MAX_Z):
        super().__init__()
        self.hparams: dict[str, Any] = dict(
            hidden=hidden, num_layers=num_layers, num_elements=num_elements
        )
        self.embedding = nn.Parameter(torch.empty(num_elements + 1, hidden))
        self.element_mlp = mlp([hidden + 1] + [hidden] * num_layers, activate_last=True)
        self.output = mlp([hidden] * num_layers + [1])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding, std=1.0)
        _reset(self)

    def forward(self, fractions: Tensor) -> Tensor:
        # (G, E+1) -> per-element features (G, E+1, H), weighted by fraction and summed
        g, e = fractions.shape
        x = fractions.unsqueeze(-1)
        feats = self.element_mlp(torch.cat([self.embedding.expand(g, e, -1), x], dim=-1))
        pooled = (x * feats).sum(dim=1)
        return self.output(pooled).squeeze(-1)
