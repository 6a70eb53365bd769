"""Periodic neighbour lists, graph building and its rejection paths."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from gnomon.models.graphs import (
    GraphRejected,
    arrays_from_dict,
    arrays_from_structure,
    collate,
    crystal_graph,
    neighbor_list,
    numpy_neighbor_list,
    pymatgen_neighbor_list,
)


def _pairs(center, neighbor, dist):
    return sorted(zip(center.tolist(), neighbor.tolist(), np.round(dist, 5).tolist(), strict=True))


@pytest.mark.parametrize("seed", range(4))
def test_neighbor_lists_agree_with_pymatgen(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    lat = Lattice.from_parameters(*(rng.uniform(2.5, 7, 3)), *rng.uniform(70, 110, 3))
    s = Structure(lat, ["Na"] * n, rng.random((n, 3)))
    expected = _pairs(*pymatgen_neighbor_list(s, 4.5))
    assert _pairs(*neighbor_list(s.frac_coords, s.lattice.matrix, 4.5)) == expected
    assert _pairs(*numpy_neighbor_list(s.frac_coords, s.lattice.matrix, 4.5)) == expected


def test_small_cell_sees_its_own_periodic_images():
    s = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])
    center, neighbor, dist = neighbor_list(s.frac_coords, s.lattice.matrix, 3.1)
    assert len(dist) == 6 and np.allclose(dist, 3.0) and set(neighbor) == {0}


def test_dict_and_structure_give_the_same_graph():
    s = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    a, b = arrays_from_dict(s.as_dict()), arrays_from_structure(s)
    assert (
        np.array_equal(a.z, b.z)
        and np.allclose(a.frac, b.frac)
        and np.allclose(a.lattice, b.lattice)
    )
    g1, g2 = crystal_graph(s, 5.0), crystal_graph(s.as_dict(), 5.0)
    assert g1.z.tolist() == [11, 17]
    assert np.allclose(sorted(g1.dist.tolist()), sorted(g2.dist.tolist()))


def test_collate_offsets_edges_and_assigns_batches():
    s1 = Structure(Lattice.cubic(3.0), ["Li"], [[0, 0, 0]])
    s2 = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    g1, g2 = crystal_graph(s1, 3.5), crystal_graph(s2, 3.8)
    b = collate([g1, g2])
    assert b.num_graphs == 2 and b.batch.tolist() == [0, 1, 1]
    assert b.ptr.tolist() == [0, 1, 3]
    assert b.edge_index[:, g1.edge_index.shape[1] :].min() >= 1
    assert b.edge_index.max() == 2


def test_rejects_structure_with_an_isolated_atom():
    s = Structure(Lattice.cubic(12.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(GraphRejected, match="no neighbour within 5 Å of site 0 \\(Na\\)"):
        crystal_graph(s, 5.0)


def test_rejects_unsupported_element():
    s = Structure(Lattice.cubic(3.0), ["Am"], [[0, 0, 0]])
    with pytest.raises(GraphRejected, match="unsupported element Am"):
        crystal_graph(s, 5.0)


def test_rejects_elements_the_model_never_saw():
    s = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    allowed = np.zeros(95, dtype=bool)
    allowed[11] = True
    with pytest.raises(
        GraphRejected, match="unsupported element Cl: not in the model's training data"
    ):
        crystal_graph(s, 5.0, allowed_z=allowed)


def test_rejects_partial_occupancy():
    s = Structure(Lattice.cubic(3.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    with pytest.raises(GraphRejected, match="partially occupied|disordered"):
        crystal_graph(s, 5.0)
    with pytest.raises(GraphRejected, match="partially occupied"):
        crystal_graph(s.as_dict(), 5.0)


def test_rejects_something_that_is_not_a_structure():
    with pytest.raises(GraphRejected, match="not a pymatgen structure dict"):
        crystal_graph({"foo": 1}, 5.0)
