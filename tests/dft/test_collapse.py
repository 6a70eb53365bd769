"""A relaxation that ends with atoms inside one another is a failure, wherever it is judged."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ase.data import covalent_radii
from dft_helpers import rocksalt
from pymatgen.core import Element, Lattice, Structure

from gnomon.dft.collapse import COLLAPSED_FRACTION, collapsed_pair
from gnomon.dft.errors import RelaxationError
from gnomon.dft.parsing import task_from_forcefield
from gnomon.world.label import judged
from gnomon.world.oracle import INPUT_RULE


def dimer_in_box(el: str, ratio: float) -> Structure:
    """Two ``el`` atoms at ``ratio`` of their covalent bond length, far from their images."""
    bond = 2 * covalent_radii[Element(el).Z]
    return Structure(Lattice.cubic(12.0), [el, el], [[0, 0, 0], [ratio * bond / 12.0, 0, 0]])


def test_an_ordinary_crystal_is_not_collapsed():
    assert collapsed_pair(rocksalt(5.64)) is None  # NaCl: Na-Cl at 2.82 Å


def test_a_squeezed_crystal_names_its_closest_pair():
    why = collapsed_pair(rocksalt(2.6))  # Na-Cl at 1.30 Å, under 0.6 x (1.66 + 1.02) = 1.61
    assert why is not None
    assert "Na-Cl" in why or "Cl-Na" in why
    assert "1.30 Å" in why and "2.68 Å" in why


def test_the_line_is_the_stated_fraction_of_the_covalent_bond():
    assert collapsed_pair(dimer_in_box("S", COLLAPSED_FRACTION + 0.01)) is None
    why = collapsed_pair(dimer_in_box("S", COLLAPSED_FRACTION - 0.01))
    assert why is not None and "S-S" in why
    # a stricter caller may draw the line higher
    assert collapsed_pair(dimer_in_box("S", 0.7), fraction=0.75) is not None


def test_a_one_atom_cell_collapses_onto_its_own_image():
    why = collapsed_pair(Structure(Lattice.cubic(1.2), ["Fe"], [[0, 0, 0]]))
    assert why is not None and "periodic image" in why
    assert collapsed_pair(Structure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])) is None


def _forcefield_doc(structure: Structure) -> SimpleNamespace:
    output = SimpleNamespace(energy=-10.0, structure=structure, forces=[[0, 0, 0]] * len(structure),
                             stress=None, n_steps=12, elapsed_time=1.0)
    return SimpleNamespace(output=output, structure=structure, is_force_converged=True,
                           forcefield_name="CHGNet", forcefield_version="0.3.0")


def _task(structure: Structure):
    return task_from_forcefield(_forcefield_doc(structure), engine="mlip",
                                scheme="mlip-chgnet-0.3.0", settings_hash="s", inputs_hash="i",
                                initial=structure, fmax=0.1, steps=100, model_version="0.3.0")


def test_a_collapsed_forcefield_result_is_a_failed_relaxation_not_an_energy():
    assert _task(rocksalt(5.64)).energy == -10.0
    with pytest.raises(RelaxationError, match="collapsed: .*Na"):
        _task(rocksalt(2.6))


def test_the_world_judges_stored_results_again_without_relaxing():
    good, bad = rocksalt(5.64), rocksalt(2.6)
    results = {
        "a": {"id": "a", "structure": good.as_dict(), "energy": -6.0},
        "b": {"id": "b", "structure": bad.as_dict(), "energy": 20.0},
        "c": {"id": "c", "error": "input refused: too dense"},
    }
    out = judged(results)
    assert out["a"] is results["a"]
    assert out["c"] is results["c"]
    assert "collapsed" in out["b"]["error"] and out["b"]["input_rule"] == INPUT_RULE
    assert "error" not in results["b"]  # the stored record itself is untouched
