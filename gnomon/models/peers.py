"""Peer architectures the gnomon network is measured against, on the same graphs and splits.

The GNoME-style network earns its place only if it beats well-known models trained on the same
data with the same budget. Two trained peers read gnomon's periodic crystal graphs
(:func:`gnomon.models.graphs.crystal_graph`) and follow the contract of
:class:`gnomon.models.gnn.GNoMENet`, so :class:`gnomon.models.ensemble.Ensemble` and the
:class:`gnomon.models.training.Trainer` train, calibrate, save and reload them unchanged (model
kinds ``"schnet"`` and ``"cgcnn"``): ``forward(z, edge_index, dist, batch, num_graphs, edges)``
returns each graph's energy per atom in normalised units (the ensemble adds the per-element
references, shift and scale), and ``edge_inputs(dist, edge_index, num_nodes)`` computes what
members of one ensemble share per batch.

- :class:`PeriodicSchNet`: torch-geometric's ``SchNet`` (Schütt et al., J. Chem. Phys. 148,
  241722, 2018), its own embedding, Gaussian smearing, interaction blocks and atomwise output
  layers, called on the periodic edges instead of its non-periodic ``radius_graph``.
- :class:`CGCNN`: the crystal graph convolutional network of Xie & Grossman (PRL 120, 145301,
  2018) built from ``torch_geometric.nn.CGConv``.
- The composition-only peer is :class:`gnomon.models.composition.CompositionNet` (kind
  ``"composition"``).
- A universal potential as a zero-shot reference, not trained here: SevenNet-0
  (:func:`sevennet_energies`, :func:`elemental_references`, :func:`formation_energies`).

torch-geometric is imported when a peer is built, not with this module: the ensemble that
loads a GNoME network imports this registry and must not wait for it.

Both trained peers use a hard cutoff: edges at or beyond ``cutoff`` are dropped before any
message, so a graph built out further (test-time volume augmentation builds one neighbour list
for the smallest scaling) gives the same energies as one built at the cutoff.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pymatgen.core import Structure
from torch import Tensor, nn

from gnomon.dft.potentials import SEVENNET_MODEL, sevennet_calculator
from gnomon.models.graph_data import scatter
from gnomon.models.graphs import MAX_Z
from gnomon.models.spec import GAUSSIAN_STEP, num_gaussians_for, peer_hparams

log = logging.getLogger(__name__)


class PeerEdges(NamedTuple):
    """A batch's edges as a peer reads them: those kept, their lengths and distance features."""

    edge_index: Tensor  # (2, E') rows [neighbour j, centre i]: messages flow j -> i
    dist: Tensor  # (E',) Å
    attr: Tensor  # (E', num_gaussians)


def within_cutoff(dist: Tensor, edge_index: Tensor, cutoff: float) -> tuple[Tensor, Tensor]:
    """The edges shorter than ``cutoff`` (all of them when the graph was built at the cutoff)."""
    keep = dist < cutoff
    if bool(keep.all()):
        return edge_index, dist
    return edge_index[:, keep], dist[keep]


def nearest_neighbors(
    dist: Tensor, edge_index: Tensor, num_nodes: int, k: int
) -> tuple[Tensor, Tensor]:
    """At most the ``k`` shortest incoming edges of each centre (CGCNN's 12 nearest neighbours).

    Edges are ranked by length within each centre (``edge_index[1]``); equal lengths keep their
    order of appearance, as the reference implementation's sort does. The result does not depend
    on the order edges come in unless two of them tie exactly at the k-th place.
    """
    if dist.numel() == 0:
        return edge_index, dist
    order = torch.argsort(dist, stable=True)
    order = order[torch.argsort(edge_index[1, order], stable=True)]
    centre = edge_index[1, order]
    counts = torch.bincount(centre, minlength=num_nodes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel(), device=dist.device) - starts[centre]
    keep = order[rank < k]
    return edge_index[:, keep], dist[keep]


class PeriodicSchNet(nn.Module):
    """torch-geometric's SchNet on periodic crystal graphs, energy per atom out.

    SchNet builds its graph with ``radius_graph`` on Cartesian positions, which knows nothing of
    periodic images; here its submodules run on the precomputed periodic edges in SchNet's own
    order: embedding, Gaussian smearing of the edge lengths, residual interaction blocks
    ``h <- h + interaction(h, edge_index, edge_weight, edge_attr)`` (continuous-filter
    convolutions with SchNet's cosine cutoff), the atomwise ``lin1 -> shifted softplus -> lin2``
    and a mean over the atoms of each crystal, which makes the output an energy per atom.

    Args:
        hidden: width of atom features (SchNet's ``hidden_channels``).
        num_filters: width of the continuous filters (``hidden`` when not given).
        num_layers: number of interaction blocks.
        num_gaussians: size of the Gaussian distance basis over [0, cutoff].
        cutoff: neighbour cutoff in Å (graphs must be built with at least this cutoff).
    """

    def __init__(
        self,
        hidden: int = 64,
        num_filters: int | None = None,
        num_layers: int = 3,
        num_gaussians: int | None = None,
        cutoff: float = 5.0,
    ):
        # heavy: torch_geometric (seconds to import; only a SchNet peer needs it)
        from torch_geometric.nn.models import SchNet

        super().__init__()
        num_filters = int(num_filters or hidden)
        num_gaussians = int(num_gaussians or num_gaussians_for(cutoff))
        self.hparams: dict[str, Any] = dict(
            hidden=hidden,
            num_filters=num_filters,
            num_layers=num_layers,
            num_gaussians=num_gaussians,
            cutoff=float(cutoff),
        )
        self.cutoff = float(cutoff)
        self.schnet = SchNet(
            hidden_channels=hidden,
            num_filters=num_filters,
            num_interactions=num_layers,
            num_gaussians=num_gaussians,
            cutoff=float(cutoff),
            readout="mean",
        )

    def reset_parameters(self) -> None:
        self.schnet.reset_parameters()

    def edge_inputs(self, dist: Tensor, edge_index: Tensor, num_nodes: int) -> PeerEdges:
        """Edges within the cutoff and their Gaussian features (shared by an ensemble's members)."""
        edge_index, dist = within_cutoff(dist, edge_index, self.cutoff)
        return PeerEdges(edge_index, dist, self.schnet.distance_expansion(dist))

    def forward(
        self,
        z: Tensor,
        edge_index: Tensor,
        dist: Tensor,
        batch: Tensor,
        num_graphs: int,
        edges: PeerEdges | None = None,
    ) -> Tensor:
        if edges is None:
            edges = self.edge_inputs(dist, edge_index, z.shape[0])
        net = self.schnet
        h = net.embedding(z)
        for interaction in net.interactions:
            h = h + interaction(h, edges.edge_index, edges.dist, edges.attr)
        atomic = net.lin2(net.act(net.lin1(h)))
        return net.readout(atomic, batch, dim=0, dim_size=num_graphs).squeeze(-1)


class GaussianDistance(nn.Module):
    """CGCNN's edge features: exp(-(d - μ_k)² / σ²), μ_k = 0, step, ..., cutoff, σ = step."""

    def __init__(self, cutoff: float, step: float = GAUSSIAN_STEP):
        super().__init__()
        self.step = float(step)
        self.register_buffer(
            "centers", torch.arange(num_gaussians_for(cutoff, step), dtype=torch.float32) * step
        )

    def forward(self, dist: Tensor) -> Tensor:
        return torch.exp(-((dist.unsqueeze(-1) - self.centers) ** 2) / self.step**2)


class CGCNN(nn.Module):
    """Crystal graph convolutional network (Xie & Grossman, PRL 120, 145301, 2018).

    As published: atoms embedded to ``hidden`` features, bonds to the ``max_neighbors`` = 12
    nearest neighbours within the cutoff, described by Gaussian-expanded lengths (step 0.2 Å);
    ``num_layers`` = 3 convolutions

        v_i <- softplus(v_i + BN(Σ_j σ(z_ij W_f + b_f) ⊙ softplus(z_ij W_s + b_s))),
        z_ij = [v_i, v_j, u_ij]

    (``CGConv`` with ``aggr="add"`` and batch norm, then the softplus); a mean over the atoms,
    softplus, one hidden fully connected layer of ``fc_hidden`` features with softplus, and a
    linear output: the energy per atom.

    Two departures, both forced by reading gnomon's graphs: the published input is a fixed
    92-long vector of element properties mapped by a linear layer, here a learned embedding per
    element (the same linear map of a one-hot element code, without the property prior); the
    published reference code also batch-normalises the gate pre-activations, which ``CGConv``
    does not.

    Args:
        hidden: width of atom features (the paper's ``atom_fea_len``, 64).
        num_layers: number of convolutions (3).
        fc_hidden: width of the hidden fully connected layer (``h_fea_len``, 128).
        cutoff: neighbour cutoff in Å (the paper's 8 Å; graphs must reach at least this far).
        max_neighbors: neighbours kept per atom, nearest first (12).
        gaussian_step: spacing and width of the Gaussian distance basis in Å (0.2).
        num_elements: size of the element embedding (atomic numbers 1..num_elements).
    """

    def __init__(
        self,
        hidden: int = 64,
        num_layers: int = 3,
        fc_hidden: int = 128,
        cutoff: float = 5.0,
        max_neighbors: int = 12,
        gaussian_step: float = GAUSSIAN_STEP,
        num_elements: int = MAX_Z,
    ):
        # heavy: torch_geometric (seconds to import; only a CGCNN peer needs it)
        from torch_geometric.nn import CGConv

        super().__init__()
        self.hparams: dict[str, Any] = dict(
            hidden=hidden,
            num_layers=num_layers,
            fc_hidden=fc_hidden,
            cutoff=float(cutoff),
            max_neighbors=max_neighbors,
            gaussian_step=float(gaussian_step),
            num_elements=num_elements,
        )
        self.cutoff = float(cutoff)
        self.max_neighbors = int(max_neighbors)
        self.embedding = nn.Embedding(num_elements + 1, hidden)
        self.expansion = GaussianDistance(cutoff, gaussian_step)
        num_gaussians = int(self.expansion.centers.numel())
        self.convs = nn.ModuleList(
            CGConv(hidden, dim=num_gaussians, aggr="add", batch_norm=True)
            for _ in range(num_layers)
        )
        self.conv_to_fc = nn.Linear(hidden, fc_hidden)
        self.fc_out = nn.Linear(fc_hidden, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        self.conv_to_fc.reset_parameters()
        self.fc_out.reset_parameters()

    def edge_inputs(self, dist: Tensor, edge_index: Tensor, num_nodes: int) -> PeerEdges:
        """The 12 nearest neighbours within the cutoff and their Gaussian features."""
        edge_index, dist = within_cutoff(dist, edge_index, self.cutoff)
        edge_index, dist = nearest_neighbors(dist, edge_index, num_nodes, self.max_neighbors)
        return PeerEdges(edge_index, dist, self.expansion(dist))

    def forward(
        self,
        z: Tensor,
        edge_index: Tensor,
        dist: Tensor,
        batch: Tensor,
        num_graphs: int,
        edges: PeerEdges | None = None,
    ) -> Tensor:
        if edges is None:
            edges = self.edge_inputs(dist, edge_index, z.shape[0])
        v = self.embedding(z)
        with self._batch_stats_usable(v.shape[0]):
            for conv in self.convs:
                v = F.softplus(conv(v, edges.edge_index, edges.attr))
        crystal = scatter(v, batch, dim=0, dim_size=num_graphs, reduce="mean")
        crystal = F.softplus(self.conv_to_fc(F.softplus(crystal)))
        return self.fc_out(crystal).squeeze(-1)

    @contextlib.contextmanager
    def _batch_stats_usable(self, num_nodes: int) -> Iterator[None]:
        """Batch norm cannot take statistics of one atom: a training batch holding a single
        one-atom crystal (an elemental reference, last in an epoch) normalises by the running
        statistics instead of failing."""
        if not (self.training and num_nodes < 2):
            yield
            return
        norms = [conv.bn for conv in self.convs if conv.bn is not None]
        for bn in norms:
            bn.eval()
        try:
            yield
        finally:
            for bn in norms:
                bn.train()


PEERS: dict[str, type[nn.Module]] = {"schnet": PeriodicSchNet, "cgcnn": CGCNN}
"""The trained structural peers by model kind (the composition peer is its own kind)."""


# -- SevenNet-0: a universal potential as a zero-shot reference -------------------------------

# The one loader of SevenNet (SEVENNET_MODEL, sevennet_calculator) lives beside its engine in
# gnomon.dft.potentials, so the engine and this reference load the same calculator.


def _as_atoms(structure):
    from ase import Atoms  # heavy: ase
    from pymatgen.io.ase import AseAtomsAdaptor  # heavy: pymatgen.io

    if isinstance(structure, Atoms):
        return structure.copy()
    if isinstance(structure, Mapping):
        structure = Structure.from_dict(structure)
    return AseAtomsAdaptor.get_atoms(structure)


def sevennet_energies(
    structures: Sequence[Any],
    calculator=None,
    *,
    relax_steps: int = 0,
    fmax: float = 0.05,
) -> np.ndarray:
    """SevenNet's energy per atom (eV) of each structure (pymatgen Structure, its dict, or ASE
    Atoms).

    By default a single point on the structure as given: on the benchmark's oracle-relaxed
    structures that is the universal potential's judgement of the same crystal. With
    ``relax_steps`` > 0 each structure is first relaxed in the potential (FIRE on positions
    and cell, up to ``relax_steps`` steps or forces below ``fmax`` eV/Å), as screening an
    unrelaxed candidate with it would.
    """
    calc = calculator if calculator is not None else sevennet_calculator()
    out = np.empty(len(structures), dtype=np.float64)
    for k, structure in enumerate(structures):
        atoms = _as_atoms(structure)
        atoms.calc = calc
        if relax_steps > 0:
            from ase.filters import FrechetCellFilter  # heavy: ase
            from ase.optimize import FIRE  # heavy: ase

            FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=fmax, steps=relax_steps)
        out[k] = float(atoms.get_potential_energy()) / len(atoms)
        if (k + 1) % 100 == 0:
            log.info("SevenNet: %d of %d structures", k + 1, len(structures))
    return out


def elemental_references(
    structures: Sequence[Any], energies_per_atom: Sequence[float]
) -> dict[str, float]:
    """Each element's reference energy per atom: the lowest among the elemental structures.

    ``structures`` may mix compounds and elements; only single-element ones count. Energies must
    come from one potential (for SevenNet: :func:`sevennet_energies` of the same structures), so
    formation energies are taken within that potential's own scheme, as the hull requires.
    """
    refs: dict[str, float] = {}
    for structure, energy in zip(structures, energies_per_atom, strict=True):
        elements = _elements_of(structure)
        if len(elements) != 1:
            continue
        (el,) = elements
        refs[el] = min(float(energy), refs.get(el, np.inf))
    return refs


def formation_energies(
    compositions: Sequence[Mapping[str, float]],
    energies_per_atom: Sequence[float],
    references: Mapping[str, float],
) -> np.ndarray:
    """E_f / N = E / N - Σ_el x_el μ_el, with x_el the atomic fractions (eV/atom).

    Raises KeyError naming an element that has no reference (a formation energy against a
    made-up reference would be silently wrong).
    """
    out = np.empty(len(compositions), dtype=np.float64)
    for k, (comp, energy) in enumerate(zip(compositions, energies_per_atom, strict=True)):
        total = float(sum(comp.values()))
        missing = sorted(el for el in comp if el not in references)
        if missing:
            raise KeyError(f"no elemental reference energy for {', '.join(missing)}")
        out[k] = float(energy) - sum(references[el] * amount / total for el, amount in comp.items())
    return out


def _elements_of(structure) -> set[str]:
    if isinstance(structure, Mapping):
        return {sp["element"] for site in structure["sites"] for sp in site["species"]}
    if hasattr(structure, "get_chemical_symbols"):
        return set(structure.get_chemical_symbols())
    return {el.symbol for el in structure.composition.elements}


__all__ = [
    "CGCNN",
    "PEERS",
    "PeerEdges",
    "PeriodicSchNet",
    "SEVENNET_MODEL",
    "elemental_references",
    "formation_energies",
    "nearest_neighbors",
    "peer_hparams",
    "sevennet_calculator",
    "sevennet_energies",
]
