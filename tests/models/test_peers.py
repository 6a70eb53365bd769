"""Peer architectures: SchNet and CGCNN on periodic graphs, trained like the gnomon ensemble;
SevenNet-0 as a zero-shot reference (skipped where ``sevenn`` is not installed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from gnomon.models.ensemble import Ensemble, build_member
from gnomon.models.graphs import collate, crystal_graph
from gnomon.models.peers import (
    CGCNN,
    PeriodicSchNet,
    elemental_references,
    formation_energies,
    nearest_neighbors,
    peer_hparams,
)
from gnomon.models.screening import Featurizer
from gnomon.models.spec import ModelSpec
from gnomon.models.training import Trainer, predict_graphs
from tests.models.conftest import tiny_config, toy_samples

STRUCTURAL = ["schnet", "cgcnn"]
CUTOFF = 4.0


def crystal(seed: int = 0) -> Structure:
    rng = np.random.default_rng(seed)
    lat = Lattice.from_parameters(4.1, 4.6, 5.2, 84, 97, 103)
    return Structure(lat, ["Li", "Fe", "P", "O", "O", "O"], rng.random((6, 3)))


def energy(model, structures, cutoff: float = CUTOFF) -> np.ndarray:
    b = collate([crystal_graph(s, cutoff) for s in structures])
    with torch.no_grad():
        return model(b.z, b.edge_index, b.dist, b.batch, b.num_graphs).double().numpy()


def trained_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """Run a few training-mode passes so CGCNN's batch norms hold non-trivial running
    statistics: an untrained one would hide a normalisation that depends on the batch."""
    model.train()
    b = collate([crystal_graph(crystal(seed), CUTOFF) for seed in range(4)])
    with torch.no_grad():
        for _ in range(3):
            model(b.z, b.edge_index, b.dist, b.batch, b.num_graphs)
    return model.eval()


@pytest.fixture(params=STRUCTURAL)
def model(request):
    torch.manual_seed(1)
    net = build_member(request.param, peer_hparams(request.param, 16, 2, CUTOFF))
    return trained_batch_norm(net)


def test_peer_kinds_build_the_published_architectures():
    schnet = build_member("schnet", ModelSpec(kind="schnet", cutoff=5.0).hparams(1.0))
    cgcnn = build_member("cgcnn", ModelSpec(kind="cgcnn", cutoff=5.0, num_layers=3).hparams(1.0))
    assert isinstance(schnet, PeriodicSchNet) and len(schnet.schnet.interactions) == 3
    assert schnet.schnet.num_gaussians == 26  # 0, 0.2, ..., 5 Å
    assert isinstance(cgcnn, CGCNN) and len(cgcnn.convs) == 3
    assert all(conv.bn is not None and conv.aggr == "add" for conv in cgcnn.convs)
    assert cgcnn.max_neighbors == 12 and cgcnn.conv_to_fc.out_features == 2 * 48


def test_permutation_invariance(model):
    s = crystal()
    perm = [3, 0, 5, 1, 4, 2]
    shuffled = Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm])
    assert energy(model, [s])[0] == pytest.approx(energy(model, [shuffled])[0], abs=1e-5)


def test_translation_invariance(model):
    s = crystal()
    moved = s.copy()
    moved.translate_sites(list(range(len(s))), [0.31, -0.77, 0.12], frac_coords=True,
                          to_unit_cell=True)
    assert energy(model, [s])[0] == pytest.approx(energy(model, [moved])[0], abs=1e-5)


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
    assert not np.allclose(together[0], together[1:], atol=1e-4)


def test_edges_beyond_the_cutoff_are_ignored(model):
    """Test-time augmentation builds graphs past the model's cutoff; those edges carry nothing."""
    stretched = crystal(1)
    stretched.scale_lattice(stretched.volume * 2.0)  # fewer than CGCNN's 12 within the cutoff
    structures = [crystal(0), stretched]
    assert np.allclose(energy(model, structures, cutoff=CUTOFF + 1.5),
                       energy(model, structures), atol=1e-5)


def test_nearest_neighbors_keeps_the_k_shortest_edges_of_each_centre():
    b = collate([crystal_graph(crystal(seed), 6.0) for seed in range(2)])
    edge_index, dist = nearest_neighbors(b.dist, b.edge_index, b.num_nodes, 12)
    for centre in range(b.num_nodes):
        mine = b.dist[b.edge_index[1] == centre]
        kept = dist[edge_index[1] == centre]
        assert len(mine) > 12
        assert torch.equal(kept.sort().values, mine.sort().values[:12])
    # the edges' order does not matter
    order = torch.randperm(b.dist.numel(), generator=torch.Generator().manual_seed(0))
    shuffled_index, shuffled_dist = nearest_neighbors(b.dist[order], b.edge_index[:, order],
                                                      b.num_nodes, 12)
    assert torch.equal(shuffled_dist.sort().values, dist.sort().values)


def test_cgcnn_trains_on_a_batch_of_one_atom():
    """Batch norm has no statistics of a single atom; an elemental reference alone in the last
    training batch must still train (with the running statistics)."""
    torch.manual_seed(0)
    net = CGCNN(hidden=8, num_layers=2, fc_hidden=8, cutoff=CUTOFF).train()
    b = collate([crystal_graph(Structure(Lattice.cubic(3.0), ["Na"], [[0, 0, 0]]), CUTOFF)])
    out = net(b.z, b.edge_index, b.dist, b.batch, b.num_graphs)
    out.sum().backward()
    assert torch.isfinite(out).all() and all(conv.bn.training for conv in net.convs)


@pytest.fixture(scope="module", params=["composition", *STRUCTURAL])
def trained(request):
    """Each peer trained through the project's Trainer, with its per-epoch training loss."""
    losses: list[float] = []

    def progress(member, epoch, most, monitor, value):
        assert monitor == "train_loss"
        if member.startswith("member 1/"):
            losses.append(value)

    torch.manual_seed(0)
    spec = ModelSpec(kind=request.param, hidden=16, num_layers=2, cutoff=CUTOFF)
    config = tiny_config(max_epochs=10, patience=10, val_fraction=0.0, batch_size=4, lr=1e-2)
    result = Trainer(spec, config, progress).fit(toy_samples(16))
    return request.param, result, losses


def test_each_peer_trains_through_the_trainer_and_lowers_its_loss(trained):
    kind, result, losses = trained
    assert result.ensemble.kind == kind and result.ensemble.size == 2
    assert len(losses) == 10
    # the toy energy's residual is a volume well: structural models can learn it, the
    # composition model only its mean per formula
    assert losses[-1] < (1.0 if kind == "composition" else 0.85) * losses[0], losses


def test_a_trained_peer_saves_and_reloads_with_identical_predictions(trained, tmp_path):
    kind, result, _ = trained
    ensemble = result.ensemble
    featurizer = Featurizer.for_ensemble(ensemble)
    graphs = [featurizer(s.structure if kind != "composition" else s.composition)
              for s in toy_samples(6, seed=9)]
    before = predict_graphs(ensemble, graphs, featurizer)
    again = predict_graphs(Ensemble.from_state(ensemble.state()), graphs, featurizer)
    path = tmp_path / f"{kind}.pt"
    ensemble.save(path)
    loaded = predict_graphs(Ensemble.load(path), graphs, featurizer)
    assert np.array_equal(before.members, again.members)
    assert np.array_equal(before.members, loaded.members)
    assert np.isfinite(before.mean).all() and not np.allclose(before.members[0], before.members[1])


def test_formation_energies_against_hand_computed_values():
    refs = elemental_references(
        [Structure(Lattice.cubic(3.0), ["Li"], [[0, 0, 0]]),
         Structure(Lattice.cubic(3.5), ["Li"], [[0, 0, 0]]),
         Structure(Lattice.cubic(4.0), ["O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
         Structure(Lattice.cubic(4.0), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])],
        [-1.8, -1.9, -4.9, -9.0],
    )
    assert refs == {"Li": -1.9, "O": -4.9}  # lowest elemental energy; compounds ignored
    ef = formation_energies([{"Li": 2, "O": 1}, {"Li": 1}], [-4.0, -1.8], refs)
    assert ef == pytest.approx([-4.0 - (2 / 3 * -1.9 + 1 / 3 * -4.9), 0.1])
    with pytest.raises(KeyError, match="Fe"):
        formation_energies([{"Fe": 1, "O": 1}], [-5.0], refs)


def test_sevennet_zero_shot_energies():
    pytest.importorskip("sevenn", reason="sevenn is not installed: SevenNet-0 reference skipped")
    from gnomon.models.peers import sevennet_calculator, sevennet_energies

    calc = sevennet_calculator()
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.2), ["Mg", "O"],
                                         [[0, 0, 0], [0.5, 0.5, 0.5]])
    big = rocksalt.copy()
    big.make_supercell([2, 1, 1])
    elements = [Structure.from_spacegroup("Im-3m", Lattice.cubic(3.58), ["Mg"], [[0, 0, 0]]),
                Structure(Lattice.cubic(7.0), ["O", "O"], [[0, 0, 0], [1.21 / 7.0, 0, 0]])]
    e = sevennet_energies([rocksalt, big.as_dict(), *elements], calc)
    assert np.isfinite(e).all()
    assert e[0] == pytest.approx(e[1], abs=1e-4)  # per atom, whatever the cell
    refs = elemental_references(elements, e[2:])
    ef = formation_energies([{"Mg": 1, "O": 1}], e[:1], refs)
    assert -6.0 < ef[0] < 0.0  # MgO is strongly bound (about -3 eV/atom)
