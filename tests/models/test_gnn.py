"""The network's symmetries: permutations, translations, rotations, periodic images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from gnomon.models.composition import CompositionNet, fraction_matrix
from gnomon.models.gnn import GNoMENet, PolynomialEnvelope
from gnomon.models.graphs import collate, crystal_graph


def energy(model, structures, cutoff=4.0):
    b = collate([crystal_graph(s, cutoff) for s in structures])
    with torch.no_grad():
        return model(b.z, b.edge_index, b.dist, b.batch, b.num_graphs).double().numpy()


def crystal(seed=0) -> Structure:
    rng = np.random.default_rng(seed)
    lat = Lattice.from_parameters(4.1, 4.6, 5.2, 84, 97, 103)
    return Structure(lat, ["Li", "Fe", "P", "O", "O", "O"], rng.random((6, 3)))


@pytest.fixture(params=["sum", "mean"])
def model(request):
    torch.manual_seed(1)
    return GNoMENet(
        hidden=16,
        num_layers=2,
        num_radial=8,
        cutoff=4.0,
        avg_num_neighbors=10,
        readout=request.param,
    ).eval()


def test_permutation_invariance(model):
    s = crystal()
    perm = [3, 0, 5, 1, 4, 2]
    shuffled = Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm])
    assert energy(model, [s])[0] == pytest.approx(energy(model, [shuffled])[0], abs=1e-5)


def test_translation_invariance(model):
    s = crystal()
    moved = s.copy()
    moved.translate_sites(
        list(range(len(s))), [0.31, -0.77, 0.12], frac_coords=True, to_unit_cell=True
    )
    assert energy(model, [s])[0] == pytest.approx(energy(model, [moved])[0], abs=1e-5)


def test_rotation_invariance(model):
    from pymatgen.core.operations import SymmOp

    s = crystal()
    rotated = s.copy()
    rotated.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0))
    assert energy(model, [s])[0] == pytest.approx(energy(model, [rotated])[0], abs=1e-5)


@pytest.mark.parametrize("scaling", [[2, 1, 1], [2, 2, 1], [[1, 1, 0], [-1, 1, 0], [0, 0, 1]]])
def test_supercell_has_the_same_energy_per_atom(model, scaling):
    s = crystal()
    big = s.copy()
    big.make_supercell(scaling)
    assert len(big) > len(s)
    assert energy(model, [s])[0] == pytest.approx(energy(model, [big])[0], abs=1e-5)


def test_batched_equals_one_at_a_time(model):
    structures = [crystal(seed) for seed in range(3)]
    together = energy(model, structures)
    alone = [energy(model, [s])[0] for s in structures]
    assert np.allclose(together, alone, atol=1e-5)


def test_energy_is_continuous_across_the_cutoff(model):
    # a neighbour crossing the cutoff switches its message off smoothly
    e = [
        energy(model, [Structure(Lattice.cubic(a), ["Na"], [[0, 0, 0]])], cutoff=6.0)[0]
        for a in (3.999, 4.0, 4.001)
    ]
    env = PolynomialEnvelope(4.0)(torch.tensor([3.99, 4.0, 4.5]))
    assert env[1] == 0 and env[2] == 0 and 0 < env[0] < 1e-3
    assert abs(e[0] - e[1]) < 1e-3 and abs(e[2] - e[1]) < 1e-3


@pytest.mark.parametrize("exponent", [1, 2, 5, 6, 7])
def test_envelope_is_its_polynomial(exponent):
    """Horner's form with powers by squaring gives the textbook polynomial (float64 reference)."""
    d = torch.linspace(0.0, 5.5, 401)
    x = d.double() / 5.0
    p = exponent
    ref = (
        1
        - (p + 1) * (p + 2) / 2 * x**p
        + p * (p + 2) * x ** (p + 1)
        - p * (p + 1) / 2 * x ** (p + 2)
    )
    ref = torch.where(x < 1, ref, torch.zeros_like(ref))
    got = PolynomialEnvelope(5.0, exponent)(d).double()
    assert torch.allclose(got, ref, atol=1e-5)
    assert got[0] == 1.0


def test_reset_parameters_reinitialises(model):
    before = [p.clone() for p in model.parameters()]
    model.reset_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_unknown_readout_is_refused():
    with pytest.raises(ValueError, match="readout"):
        GNoMENet(readout="max")


def test_composition_model_depends_only_on_fractions():
    torch.manual_seed(0)
    net = CompositionNet(hidden=8, num_layers=2).eval()
    x = torch.from_numpy(fraction_matrix([{"Fe": 2, "O": 3}, {"O": 6, "Fe": 4}, {"Fe": 1, "O": 1}]))
    assert np.allclose(x[0], x[1]) and x[0].sum() == pytest.approx(1.0)
    with torch.no_grad():
        e = net(x).numpy()
    assert e[0] == pytest.approx(e[1], abs=1e-6) and e[0] != pytest.approx(e[2], abs=1e-6)


def test_in_place_inference_path_equals_the_autograd_path(model):
    """Screening runs an in-place variant of each block; it must compute the same numbers."""
    b = collate([crystal_graph(crystal(seed), 4.0) for seed in range(3)])
    with torch.enable_grad():
        trained_path = model(b.z, b.edge_index, b.dist, b.batch, b.num_graphs)
    assert trained_path.requires_grad
    with torch.inference_mode():
        fast = model(b.z, b.edge_index, b.dist, b.batch, b.num_graphs)
        shared_basis = model(
            b.z,
            b.edge_index,
            b.dist,
            b.batch,
            b.num_graphs,
            model.edge_inputs(b.dist, b.edge_index, b.num_nodes),
        )
    assert torch.allclose(fast, trained_path.detach(), atol=1e-6)
    assert torch.equal(fast, shared_basis)
    # the inputs a caller passes are left untouched by the in-place arithmetic
    assert torch.equal(
        b.dist, collate([crystal_graph(crystal(seed), 4.0) for seed in range(3)]).dist
    )


def test_inference_path_without_sorted_edges_equals_the_autograd_path(model):
    """Edges not sorted by centre get no gather matrix: the scatter fallback (last block
    included, where the edge projection moves to the nodes) must give the same energies."""
    b = collate([crystal_graph(crystal(seed), 4.0) for seed in range(3)])
    order = torch.randperm(b.edge_index.shape[1], generator=torch.Generator().manual_seed(0))
    edge_index, dist = b.edge_index[:, order], b.dist[order]
    with torch.inference_mode():
        edges = model.edge_inputs(dist, edge_index, b.num_nodes)
        shuffled = model(b.z, edge_index, dist, b.batch, b.num_graphs, edges)
        sorted_ = model(b.z, b.edge_index, b.dist, b.batch, b.num_graphs)
    assert edges.gather is None and edges.scratch is not None
    with torch.enable_grad():
        reference = model(b.z, b.edge_index, b.dist, b.batch, b.num_graphs).detach()
    assert torch.allclose(shuffled, reference, atol=1e-6)
    assert torch.allclose(sorted_, reference, atol=1e-6)


def test_members_sharing_edge_inputs_do_not_disturb_each_other():
    """An ensemble's members reuse one batch's scratch buffers in turn."""
    torch.manual_seed(3)
    members = [
        GNoMENet(hidden=16, num_layers=3, num_radial=8, cutoff=4.0, avg_num_neighbors=10).eval()
        for _ in range(3)
    ]
    b = collate([crystal_graph(crystal(seed), 4.0) for seed in range(2)])
    with torch.inference_mode():
        alone = [m(b.z, b.edge_index, b.dist, b.batch, b.num_graphs) for m in members]
        edges = members[0].edge_inputs(b.dist, b.edge_index, b.num_nodes)
        shared = [m(b.z, b.edge_index, b.dist, b.batch, b.num_graphs, edges) for m in members]
    assert all(torch.equal(a, s) for a, s in zip(alone, shared, strict=True))
    assert not torch.allclose(alone[0], alone[1])
