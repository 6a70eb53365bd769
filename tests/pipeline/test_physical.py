"""Only physical candidates reach the screen: a predicted volume, and no pair inside another."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.generation.physical import PhysicalCheck, close_pair
from gnomon.pipeline.generation.random_search import estimate_volume_per_atom


def rock_salt(a: float, cation: str = "Mg", anion: str = "O") -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def test_a_cell_at_a_sixth_of_its_volume_is_brought_to_the_predicted_one():
    dense = rock_salt(4.21 * 0.55)  # MgO at a sixth of its volume: Mg-O at 1.16 Å
    check = PhysicalCheck()
    out, reason = check.structure(dense)
    assert reason is None and out is not None
    predicted = estimate_volume_per_atom(dense.composition)
    assert abs(out.volume / len(out) - predicted) < 1e-6 * predicted
    assert np.allclose(out.frac_coords, dense.frac_coords)  # shape and sites kept
    assert out.lattice.angles == dense.lattice.angles
    assert check.rescaled == 1


def test_without_rescaling_the_same_cell_is_refused_naming_the_pair():
    dense = rock_salt(4.21 * 0.55)
    check = PhysicalCheck(rescale=False)
    out, reason = check.structure(dense)
    assert out is None
    assert reason is not None and "Mg-O" in reason and "1.16 Å" in reason


def test_two_atoms_inside_one_another_are_refused_whatever_the_volume():
    """Rescaling cannot separate a pair 0.04 Å apart in a large cell: refused, counted."""
    cell = Structure(
        Lattice.cubic(6.0), ["Li", "Li", "O"], [[0, 0, 0], [0.04 / 6.0, 0, 0], [0.5, 0.5, 0.5]]
    )
    good = rock_salt(4.21)
    check = PhysicalCheck()
    stream = [candidate_from_structure(s, "file") for s in (cell, good)]
    kept = list(check.candidates(stream))
    assert [c.reduced_formula for c in kept] == ["MgO"]
    assert check.counts()["refused"] == {"too_close": 1}
    # the kept candidate is the same candidate, at the predicted volume
    assert kept[0].id == stream[1].id
    volume = Structure.from_dict(kept[0].structure).volume / 8
    assert abs(volume - estimate_volume_per_atom(good.composition)) < 1e-6 * volume


def test_a_real_crystal_has_no_close_pair():
    assert close_pair(rock_salt(4.21)) is None
    assert close_pair(rock_salt(5.64, "Na", "Cl")) is None


def test_an_element_from_a_generator_is_brought_to_its_volume_too():
    """A SAPS outcome that substituted every site is an elemental cell at its template's
    density: it is rescaled like any other."""
    fcc = Structure(Lattice.cubic(4.05 * 0.6), ["Al"] * 4,
                    [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    out, reason = PhysicalCheck().structure(fcc)
    assert reason is None and out is not None
    predicted = estimate_volume_per_atom(fcc.composition)
    assert abs(out.volume / 4 - predicted) < 1e-6 * predicted


def test_an_input_pair_at_an_o2_bond_passes_and_one_far_shorter_does_not():
    for d, refused in ((1.21, False), (0.85, True)):
        cell = Structure(Lattice.cubic(8.0), ["O", "O", "Li", "Li"],
                         [[0, 0, 0], [d / 8.0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0.5]])
        out, reason = PhysicalCheck(rescale=False).structure(cell)
        assert (out is None) is refused, reason
