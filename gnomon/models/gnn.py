"""The GNoME-style graph network.

Following the methods of Merchant et al. (Nature 2023): atoms are embedded by element, edges
carry their length expanded in a radial basis, and L interaction blocks update edges and
nodes with SiLU multilayer perceptrons. Messages summed at a node are divided by the average
number of neighbours in the training set, which keeps activations on the same scale for
sparse and dense crystals. A per-atom readout gives the energy per atom:

    e_ij^0 = W_e · rbf(d_ij)                           h_i^0 = Embed(Z_i)
    e_ij^{l+1} = e_ij^l + φ_e(h_i^l, h_j^l, e_ij^l)
    m_i^l = (1 / <n_nbr>) Σ_j u(d_ij) e_ij^{l+1}
    h_i^{l+1} = h_i^l + φ_v(h_i^l, m_i^l)
    E / N = (1/N) Σ_i ψ(h_i^L)                        (readout = "sum": atomic energies)
    E / N = ψ((1/N) Σ_i h_i^L)                        (readout = "mean": pooled features)

where u is a smooth envelope that takes each message to zero at the cutoff, so energies are
continuous as atoms cross it (and test-time volume scalings can reuse one neighbour list).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnomon.models.graph_data import scatter


def mlp(sizes: list[int], activate_last: bool = False) -> nn.Sequential:
    """Linear layers joined by SiLU."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2 or activate_last:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def _reset(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Embedding | nn.LayerNorm):
            layer.reset_parameters()


class PolynomialEnvelope(nn.Module):
    """u(d) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), x = d / cutoff; 0 beyond."""

    def __init__(self, cutoff: float, exponent: int = 5):
        super().__init__()
        self.cutoff = cutoff
        self.p = exponent

    def forward(self, dist: Tensor) -> Tensor:
        """Horner's form, u = 1 + x^p (a + x (b + c x)), with x^p by repeated squaring:
        ``Tensor.pow`` with these exponents takes a scalar path that cost more than the rest
        of the basis."""
        p = self.p
        x = dist / self.cutoff
        a, b, c = -(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2
        u = 1.0 + _int_power(x, p) * (a + x * (b + c * x))
        return torch.where(x < 1.0, u, torch.zeros_like(u))


def _int_power(x: Tensor, p: int) -> Tensor:
    """x ** p for a positive integer p, by repeated squaring."""
    result: Tensor | None = None
    while True:
        if p & 1:
            result = x if result is None else result * x
        p >>= 1
        if not p:
            assert result is not None
            return result
        x = x * x


class BesselBasis(nn.Module):
    """rbf_n(d) = sqrt(2/c) sin(nπ d / c) / d, n = 1..num_radial (DimeNet's radial basis)."""

    def __init__(self, cutoff: float, num_radial: int = 16):
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer(
            "freq", torch.arange(1, num_radial + 1, dtype=torch.float32) * math.pi / cutoff
        )

    def forward(self, dist: Tensor) -> Tensor:
        d = dist.clamp_min(1e-3).unsqueeze(-1)
        return math.sqrt(2.0 / self.cutoff) * torch.sin(self.freq * d) / d


class EdgeInputs(NamedTuple):
    """What every interaction block reads of a batch's edges besides their features."""

    rbf: Tensor
    envelope: Tensor
    gather: Tensor | None  # see envelope_gather; None off the CPU-inference path
    weighted: Tensor | None  # [u(d) rbf(d), u(d)] per edge on the CPU-inference path, else None
    pairs: Tensor | None  # (edges, 2) rows [i, N + j] into stacked node terms; see _node_terms
    scratch: Tensor | None  # (edges, hidden): the first block's edge features on that path


def _in_place_ok(x: Tensor) -> bool:
    """The in-place inference arithmetic is for CPU inference: it needs no autograd, and on a
    GPU mixed precision would hand in-place products operands of two dtypes."""
    return not torch.is_grad_enabled() and x.device.type == "cpu"


def envelope_gather(envelope: Tensor, dst: Tensor, num_nodes: int) -> Tensor | None:
    """The (nodes x edges) matrix whose product with edge features sums u(d_ij) e_ij into each
    centre i, as compressed sparse rows; None unless edges come sorted by centre (as
    :func:`gnomon.models.graphs.collate` leaves them).

    One sparse-dense product per layer replaces an envelope multiply (an edges x features
    temporary) and a scatter; built once per batch, shared by every member and layer.
    """
    if dst.numel() == 0 or bool((dst[1:] < dst[:-1]).any()):
        return None
    rows = torch.zeros(num_nodes + 1, dtype=torch.long, device=dst.device)
    torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0, out=rows[1:])
    cols = torch.arange(dst.numel(), device=dst.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(rows, cols, envelope, size=(num_nodes, dst.numel()))


def _node_terms(center: Tensor, neighbor: Tensor, pairs: Tensor) -> Tensor:
    """center_i + neighbor_j for every edge j -> i, from ``pairs`` rows [i, N + j].

    One embedding-bag sum over the stacked (2N x hidden) node terms writes each edge's row
    once; two gathers and an add wrote two (edges x hidden) arrays and read them back
    (5 % of a screening forward pass, measured interleaved; the sums are bit-identical).
    """
    return F.embedding_bag(pairs, torch.cat([center, neighbor]), mode="sum")


def _weighted_sum(x: Tensor, edges: EdgeInputs, dst: Tensor, num_nodes: int) -> Tensor:
    """Σ_j u(d_ij) x_ij at each centre i: one sparse-dense product when the gather matrix exists."""
    if edges.gather is not None:
        return edges.gather @ x
    return scatter(edges.envelope.unsqueeze(-1) * x, dst, dim=0, dim_size=num_nodes, reduce="sum")


class GNoMEInteraction(nn.Module):
    """One message-passing block: an edge update then a node update, both residual.

    The edge MLP φ_e(h_i, h_j, e_ij) = W_2 SiLU(W_i h_i + W_j h_j + W_e e_ij + b) + b_2 is the
    usual MLP on the concatenation [h_i, h_j, e_ij], with its first layer split by input so the
    node terms are projected once per node and gathered, never concatenated per edge.
    """

    def __init__(self, hidden: int, avg_num_neighbors: float = 1.0):
        super().__init__()
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.edge_in = nn.Linear(hidden, hidden, bias=False)
        self.center_in = nn.Linear(hidden, hidden)
        self.neighbor_in = nn.Linear(hidden, hidden, bias=False)
        self.edge_out = nn.Linear(hidden, hidden, bias=False)
        self.node_mlp = mlp([2 * hidden, hidden, hidden])
        self.norm = nn.LayerNorm(hidden)

    def reset_parameters(self) -> None:
        _reset(self)

    def forward(
        self, h: Tensor, e: Tensor, edge_index: Tensor, envelope: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The differentiable block, for training (and anywhere off the CPU-inference path)."""
        src, dst = edge_index  # j -> i
        # e_ij <- e_ij + W_2 SiLU(W_i h_i + W_j h_j + W_e e_ij + b)
        pre = self.center_in(h).index_select(0, dst) + self.neighbor_in(h).index_select(0, src)
        pre = torch.addmm(pre, e, self.edge_in.weight.t())
        e = torch.addmm(e, F.silu(pre), self.edge_out.weight.t())
        m = scatter(envelope.unsqueeze(-1) * e, dst, dim=0, dim_size=h.shape[0], reduce="sum")
        return self._node_update(h, m), e

    def _forward_inference(
        self,
        h: Tensor,
        e: Tensor,
        edge_index: Tensor,
        edges: EdgeInputs,
        edge_proj: tuple[Tensor, Tensor] | None = None,
        last: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """The same arithmetic with every per-edge step in place, and none that is not needed.

        Per-edge tensors dominate screening time and are memory-bound on a CPU, so the node
        terms are summed per edge in one pass (:func:`_node_terms`) and every later step writes
        into that array or into ``e`` itself. Edge features enter everything downstream
        linearly, which buys two more savings: ``edge_proj`` = (x, W) with W_e e_ij = x_ij W^T,
        x narrower than e (see :meth:`GNoMENet._inference_layers`), replaces this block's edge
        projection, and the ``last`` block, whose edges nobody reads, projects the
        envelope-weighted sum per node (Σ_j u_ij W_2 s_ij = W_2 Σ_j u_ij s_ij) instead of every
        edge. Only valid without autograd; ``e`` is overwritten.
        """
        assert edges.pairs is not None
        dst = edge_index[1]
        n = h.shape[0]
        pre = _node_terms(self.center_in(h), self.neighbor_in(h), edges.pairs)
        x, w = edge_proj if edge_proj is not None else (e, self.edge_in.weight)
        pre.addmm_(x, w.t())
        F.silu(pre, inplace=True)
        if last:
            m = _weighted_sum(e, edges, dst, n)
            m.addmm_(_weighted_sum(pre, edges, dst, n), self.edge_out.weight.t())
            return self._node_update(h, m), None
        e.addmm_(pre, self.edge_out.weight.t())
        return self._node_update(h, _weighted_sum(e, edges, dst, n)), e

    def _node_update(self, h: Tensor, m: Tensor) -> Tensor:
        m = m / self.avg_num_neighbors
        return h + self.node_mlp(torch.cat([self.norm(h), m], dim=-1))


class GNoMENet(nn.Module):
    """Energy per atom of a crystal graph (in the units the caller normalised targets to).

    Args:
        hidden: width of node and edge features.
        num_layers: number of interaction blocks L.
        num_radial: size of the radial basis.
        cutoff: neighbour cutoff in Å (graphs must be built with at least this cutoff).
        avg_num_neighbors: the training set's mean number of neighbours per atom.
        readout: ``"sum"`` (atomic energies, averaged) or ``"mean"`` (pooled features, then MLP).
        num_elements: size of the element embedding (atomic numbers 1..num_elements).
    """

    def __init__(
        self,
        hidden: int = 48,
        num_layers: int = 3,
        num_radial: int = 16,
        cutoff: float = 5.0,
        avg_num_neighbors: float = 30.0,
        readout: str = "sum",
        num_elements: int = 94,
    ):
        super().__init__()
        if readout not in ("sum", "mean"):
            raise ValueError(f"readout must be 'sum' or 'mean', not {readout!r}")
        self.hparams: dict[str, Any] = dict(
            hidden=hidden,
            num_layers=num_layers,
            num_radial=num_radial,
            cutoff=float(cutoff),
            avg_num_neighbors=float(avg_num_neighbors),
            readout=readout,
            num_elements=num_elements,
        )
        self.cutoff = float(cutoff)
        self.readout = readout
        self.embedding = nn.Embedding(num_elements + 1, hidden)
        self.rbf = BesselBasis(cutoff, num_radial)
        self.envelope = PolynomialEnvelope(cutoff)
        self.edge_embedding = nn.Linear(num_radial, hidden)
        self.layers = nn.ModuleList(
            GNoMEInteraction(hidden, avg_num_neighbors) for _ in range(num_layers)
        )
        self.output = mlp([hidden, hidden, 1])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset(self)

    def edge_inputs(self, dist: Tensor, edge_index: Tensor, num_nodes: int) -> EdgeInputs:
        """Radial basis, envelope and (for CPU inference) envelope gather of a batch's edges.

        Members of an ensemble share all three (same cutoff and basis), so the ensemble
        computes them once per batch and passes them to every member.
        """
        envelope = self.envelope(dist)
        rbf = self.rbf(dist)
        if not _in_place_ok(dist):
            return EdgeInputs(rbf, envelope, None, None, None, None)
        gather = envelope_gather(envelope, edge_index[1], num_nodes)
        weighted = torch.cat([rbf * envelope.unsqueeze(-1), envelope.unsqueeze(-1)], dim=-1)
        pairs = torch.stack([edge_index[1], edge_index[0] + num_nodes], dim=1)
        scratch = dist.new_empty((dist.shape[0], self.hparams["hidden"]))
        return EdgeInputs(rbf, envelope, gather, weighted, pairs, scratch)

    def _inference_layers(self, h: Tensor, edge_index: Tensor, edges: EdgeInputs) -> Tensor:
        """The interaction blocks on the CPU-inference path.

        e_ij^0 = u (W rbf + b) is linear in w_ij = [u rbf, u] (16 + 1 wide), so both it and the
        first block's projection W_e e_ij^0 are products of w with (hidden x 17) matrices, not
        of the 48-wide e^0 with a (48 x 48) one.
        """
        assert edges.weighted is not None and edges.scratch is not None
        emb = torch.cat([self.edge_embedding.weight, self.edge_embedding.bias.unsqueeze(-1)],
                        dim=-1)
        e: Tensor | None = torch.mm(edges.weighted, emb.t(), out=edges.scratch)
        edge_proj = (edges.weighted, self.layers[0].edge_in.weight @ emb)
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            assert e is not None
            h, e = layer._forward_inference(
                h, e, edge_index, edges, edge_proj if k == 0 else None, k == last
            )
        return h

    def forward(
        self,
        z: Tensor,
        edge_index: Tensor,
        dist: Tensor,
        batch: Tensor,
        num_graphs: int,
        edges: EdgeInputs | None = None,
    ) -> Tensor:
        """Energy per atom of each graph; ``edges`` (see :meth:`edge_inputs`) may be passed in
        when several members share one batch."""
        if edges is None:
            edges = self.edge_inputs(dist, edge_index, z.shape[0])
        h = self.embedding(z)
        if edges.scratch is not None and _in_place_ok(h):
            h = self._inference_layers(h, edge_index, edges)
        else:
            e = self.edge_embedding(edges.rbf) * edges.envelope.unsqueeze(-1)
            for layer in self.layers:
                h, e = layer(h, e, edge_index, edges.envelope)
        if self.readout == "sum":
            atomic = self.output(h).squeeze(-1)
            return scatter(atomic, batch, dim=0, dim_size=num_graphs, reduce="mean")
        pooled = scatter(h, batch, dim=0, dim_size=num_graphs, reduce="mean")
        return self.output(pooled).squeeze(-1)
