"""The shipped known phases build the published structures they name, and a record that does
not (a wrong origin choice, a mistyped coordinate) is refused when it is read."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from gnomon.pipeline.thermo.known import KnownPhaseError, known_phases_in, load_known_phases

EXPECTED = {  # reduced formula: (space group number, atoms in the primitive cell)
    "Li2O": (225, 3),
    "Li2O2": (194, 8),
    "MnO": (225, 2),
    "MnO2": (136, 6),
    "Mn3O4": (141, 14),
    "LiMn2O4": (227, 14),
    "LiMnO2": (166, 4),
}


def test_the_li_mn_o_phases_are_the_published_structures():
    phases = {p.reduced_formula: p for p in known_phases_in(["Li", "Mn", "O"])}
    assert set(phases) == set(EXPECTED)
    for formula, (number, nsites) in EXPECTED.items():
        phase = phases[formula]
        s = phase.structure()
        assert s.composition.reduced_formula == formula and len(s) == nsites
        assert SpacegroupAnalyzer(s, symprec=0.01).get_space_group_number() == number, formula
        assert not s.site_properties
        assert phase.source and any(
            ch.isdigit() for ch in phase.source
        )  # a citation, with its year
        d = s.distance_matrix + np.eye(len(s)) * 99
        # nearest neighbours at bond lengths (O-O 1.53 Å is the peroxide bond of Li2O2)
        assert 1.5 < d.min() < 2.3, (formula, d.min())


def test_a_campaign_gets_the_phases_of_its_space_only():
    assert {p.reduced_formula for p in known_phases_in(["Li", "O"])} == {"Li2O", "Li2O2"}
    assert {p.reduced_formula for p in known_phases_in(["Mn", "O", "F"])} == {
        "MnO",
        "MnO2",
        "Mn3O4",
    }
    assert known_phases_in(["Na", "Cl"]) == []


def _write(tmp_path, **phase):
    record = {
        "name": "test",
        "formula": "LiMn2O4",
        "spacegroup": "Fd-3m",
        "lattice": {"a": 8.245},
        "sites": [
            {"species": "Li", "wyckoff": "8a", "coords": [0.125, 0.125, 0.125]},
            {"species": "Mn", "wyckoff": "16d", "coords": [0.5, 0.5, 0.5]},
            {"species": "O", "wyckoff": "32e", "coords": [0.2625, 0.2625, 0.2625]},
        ],
        "source": "test",
        **phase,
    }
    path = tmp_path / "phases.yaml"
    path.write_text(yaml.safe_dump({"phases": [record]}))
    return path


def test_origin_choice_and_formula_mistakes_are_refused(tmp_path):
    # origin-2 coordinates read in origin choice 1 put Li on a 16-fold site
    (wrong_origin,) = load_known_phases([_write(tmp_path)])
    with pytest.raises(KnownPhaseError, match="Wyckoff 8a has 8"):
        wrong_origin.structure()
    (right,) = load_known_phases([_write(tmp_path, spacegroup="Fd-3m:2")])
    assert right.structure().composition.reduced_formula == "LiMn2O4"
    (mislabelled,) = load_known_phases([_write(tmp_path, spacegroup="Fd-3m:2", formula="Li2MnO4")])
    with pytest.raises(KnownPhaseError, match="not Li2MnO4"):
        mislabelled.structure()
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({"phases": [{"name": "x", "formula": "Li2O"}]}))
    with pytest.raises(KnownPhaseError, match="missing or bad field"):
        load_known_phases([path])
