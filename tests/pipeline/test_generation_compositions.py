"""Compositions: enumeration, SMACT strict/relaxed balance, skipping known formulas."""

from __future__ import annotations

import pytest

from gnomon.pipeline.generation.compositions import (
    CompositionError,
    CompositionGenerator,
    is_balanced,
    known_formulas,
    parse_composition,
    parse_elements,
    stoichiometries,
)
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.storage import Entry


def test_stoichiometries_are_coprime_and_bounded():
    got = list(stoichiometries(2, 4))
    assert got == [(1, 1), (1, 2), (2, 1), (1, 3), (3, 1)]
    assert all(sum(c) <= 7 for c in stoichiometries(3, 7))
    assert (2, 2, 2) not in set(stoichiometries(3, 6))


@pytest.mark.parametrize(
    ("formula", "strict", "relaxed"),
    [
        ("Li2MnO3", True, True),
        ("LiMnO2", True, True),
        ("LiMn2O4", True, True),  # mixed valence Mn3+/Mn4+
        ("NaCl", True, True),
        ("NaCl2", False, False),
        ("LiO", False, True),  # peroxide-like O- only in the relaxed set
        ("Li3Mn", False, True),  # intermetallic: relaxed lets alloys through
    ],
)
def test_balance_modes(formula, strict, relaxed):
    assert is_balanced(formula, "strict") is strict
    assert is_balanced(formula, "relaxed") is relaxed


def test_li_mn_o_strict_contains_the_known_oxides_and_relaxed_is_a_superset():
    strict = list(CompositionGenerator(max_atoms=8).generate("Li,Mn,O"))
    relaxed = list(CompositionGenerator(max_atoms=8, mode="relaxed").generate(["Li", "Mn", "O"]))
    assert {"LiMnO2", "Li2MnO3", "LiMn2O4"} <= set(strict)
    assert set(strict) < set(relaxed)
    assert len(strict) == len(set(strict))
    sizes = [sum(1 for _ in f if _.isupper()) for f in strict]
    assert all(n == 3 for n in sizes)  # every element present
    # fewest atoms first
    from pymatgen.core import Composition

    natoms = [Composition(f).num_atoms for f in strict]
    assert natoms == sorted(natoms)


def test_subsystems_and_skipping_known():
    gen = CompositionGenerator(max_atoms=4, include_subsystems=True)
    formulas = list(gen.generate("Li,O", skip=["Li2O"]))
    assert "Li2O" not in formulas and "Li2O2" not in formulas  # Li2O2 reduces to LiO
    assert all(f != "Li" for f in formulas)  # single elements are not compositions here


def test_known_formulas_come_from_entries_and_candidates(repo):
    from pymatgen.core import Lattice, Structure

    repo.put(
        [
            Entry(
                id="e1",
                scheme="s",
                formula="Li2O1",
                reduced_formula="Li2O",
                chemsys="Li-O",
                elements=["Li", "O"],
                nsites=3,
                composition={"Li": 2, "O": 1},
                energy=-14.0,
                uncorrected_energy=-14.0,
                energy_per_atom=-4.7,
            )
        ]
    )
    s = Structure(
        Lattice.cubic(4.2),
        ["Li", "Mn", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0]],
    )
    repo.add_candidates([candidate_from_structure(s, "test")])
    assert known_formulas(repo, ["Li", "Mn", "O"]) == {"Li2O", "LiMnO2"}
    gen = CompositionGenerator(max_atoms=4)
    assert "LiMnO2" not in list(
        gen.generate("Li,Mn,O", skip=known_formulas(repo, "Li Mn O".split()))
    )


def test_bad_input_is_named():
    with pytest.raises(CompositionError, match="unknown element 'Qq'"):
        parse_elements("Li,Qq")
    with pytest.raises(CompositionError, match="no elements"):
        parse_elements(" , ")
    with pytest.raises(CompositionError, match="at least 3 atoms"):
        list(CompositionGenerator(max_atoms=2).generate("Li,Mn,O"))
    with pytest.raises(CompositionError, match="fractional"):
        parse_composition("LiMn0.5O2")
    assert parse_elements("Li, Mn ,O,Li") == ["Li", "Mn", "O"]
