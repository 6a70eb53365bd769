"""The graph a network reads, and the sums over its nodes: the two pieces of torch-geometric
that gnomon's networks use, without importing torch-geometric.

torch-geometric imports its whole package on first use (datasets, the LLM tools, and
``torch._dynamo`` through them): three seconds of CPU on a laptop before a prediction can
start, more than torch itself and all of the prediction after it. The GNoME network, the
composition model and the ensemble need only a bag of tensors and a sum or a mean per graph,
so they take them from here; :mod:`gnomon.models.peers`, whose SchNet and CGCNN layers are
torch-geometric's own, imports it when one of those peers is built.

:class:`Data` and :func:`scatter` behave as ``torch_geometric.data.Data`` and
``torch_geometric.utils.scatter`` do for what gnomon does with them (the same operations in
the same order, so a model gives the same numbers either way).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class Data:
    """A graph, or a batch of graphs, as named tensors (``z``, ``edge_index``, ``dist``,
    ``batch``, ``fractions``...) and counts (``num_nodes``, ``num_graphs``)."""

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Data:
        """Every tensor moved to ``device``, in place (as torch-geometric's ``Data.to``)."""
        for key, value in self.__dict__.items():
            if isinstance(value, Tensor):
                self.__dict__[key] = value.to(device=device, non_blocking=non_blocking)
        return self

    def keys(self) -> list[str]:
        return list(self.__dict__)

    def __repr__(self) -> str:
        parts = (
            f"{k}={list(v.shape)}" if isinstance(v, Tensor) else f"{k}={v!r}"
            for k, v in self.__dict__.items()
        )
        return f"Data({', '.join(parts)})"


def scatter(
    src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None, reduce: str = "sum"
) -> Tensor:
    """Sum or mean of the slices of ``src`` along ``dim`` that share an ``index`` (one per
    graph, or per node), ``dim_size`` of them; an index no slice has gives zeros."""
    if reduce not in ("sum", "mean"):
        raise ValueError(f"scatter reduces by 'sum' or 'mean', not {reduce!r}")
    dim = src.dim() + dim if dim < 0 else dim
    if dim_size is None:
        dim_size = int(index.max()) + 1 if index.numel() > 0 else 0
    size = (*src.shape[:dim], dim_size, *src.shape[dim + 1 :])
    out = src.new_zeros(size).scatter_add_(dim, _broadcast(index, src, dim), src)
    if reduce == "sum":
        return out
    count = src.new_zeros(dim_size)
    count.scatter_add_(0, index, src.new_ones(src.size(dim)))
    return out / _broadcast(count.clamp(min=1), out, dim)


def _broadcast(index: Tensor, ref: Tensor, dim: int) -> Tensor:
    """``index`` (1-D, along ``dim``) viewed and expanded to the shape of ``ref``."""
    shape = (1,) * dim + (-1,) + (1,) * (ref.dim() - dim - 1)
    return index.view(shape).expand_as(ref)
