"""Every energy that enters the database is checked and carries its scheme's corrections."""

from __future__ import annotations

import math

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from gnomon.pipeline.thermo.entries import EntryValidationError, entry_from_computed, make_entry
from gnomon.pipeline.thermo.schemes import (
    VASP_MP2020,
    SchemeError,
    check_scheme,
    mlip_scheme,
    qe_scheme,
)


def rocksalt(a: float = 4.2) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


@pytest.mark.parametrize("energy", [None, float("nan"), float("inf"), "abc"])
def test_bad_energies_are_named(energy):
    with pytest.raises(EntryValidationError, match="rec-7: energy"):
        make_entry("MgO", energy, "t", record="rec-7")


def test_overlapping_atoms_rejected():
    s = rocksalt()
    s.append("O", s[0].coords + 0.1, coords_are_cartesian=True)
    with pytest.raises(EntryValidationError, match="overlapping atoms"):
        make_entry(s.composition, -10, "t", structure=s, record="r")


def test_identical_positions_rejected():
    s = Structure(Lattice.cubic(4), ["Na", "Cl"], [[0, 0, 0], [0, 0, 0]])
    with pytest.raises(EntryValidationError, match="overlapping atoms"):
        make_entry(s.composition, -10, "t", structure=s)


def test_partial_occupancy_rejected():
    s = Structure(Lattice.cubic(4), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(EntryValidationError, match="partial occupancies"):
        make_entry(s.composition, -10, "t", structure=s)


def test_non_positive_volume_rejected():
    s = Structure(
        Lattice([[4, 0, 0], [0, 4, 0], [0, 0, -4]]), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    with pytest.raises(EntryValidationError, match="volume"):
        make_entry(s.composition, -10, "t", structure=s)


def test_unknown_element_named():
    with pytest.raises(EntryValidationError, match="composition"):
        make_entry("Xx2O", -3, "t", record="bad")


def test_entry_fields_and_stable_id():
    s = rocksalt()
    a = make_entry(s.composition, -24.0, mlip_scheme("chgnet", "0.3.0"), structure=s)
    b = make_entry(s.composition, -24.0, "mlip-chgnet-0.3.0", structure=s.copy())
    assert a.id == b.id
    assert a.scheme == "mlip-chgnet-0.3.0"
    assert a.chemsys == "Mg-O" and a.nsites == 8 and a.reduced_formula == "MgO"
    assert a.energy_per_atom == pytest.approx(-3.0) and a.correction == 0.0
    assert make_entry(s.composition, -24.1, "mlip-chgnet-0.3.0", structure=s).id != a.id


def test_scheme_names():
    assert qe_scheme("pbe", "pslibrary") == "qe-pbe-pslibrary"
    with pytest.raises(SchemeError):
        check_scheme("VASP PBE")


def test_mp2020_corrections_apply_only_in_the_vasp_scheme():
    params = {
        "run_type": "GGA",
        "hubbards": {},
        "is_hubbard": False,
        "potcar_spec": [
            {"titel": "PAW_PBE Mg_pv 13Apr2007", "hash": None},
            {"titel": "PAW_PBE O 08Apr2002", "hash": None},
        ],
        "potcar_symbols": ["PAW_PBE Mg_pv 13Apr2007", "PAW_PBE O 08Apr2002"],
    }
    computed = ComputedEntry("MgO", -12.0, parameters=params)
    mp = entry_from_computed(computed, VASP_MP2020)
    plain = entry_from_computed(computed, "qe-pbe-pslibrary")
    assert mp.uncorrected_energy == plain.uncorrected_energy == -12.0
    assert mp.correction < -0.5  # the oxide correction
    assert plain.correction == 0.0
    assert mp.energy == pytest.approx(-12.0 + mp.correction)


def test_mp2020_rejects_incompatible_entry():
    computed = ComputedEntry("MgO", -12.0, parameters={"run_type": "R2SCAN"})
    with pytest.raises(EntryValidationError, match="not compatible"):
        entry_from_computed(computed, VASP_MP2020, record="mp-1")


def test_corrections_from_a_foreign_scheme_are_not_kept():
    from pymatgen.entries.computed_entries import ConstantEnergyAdjustment

    computed = ComputedEntry("MgO", -12.0, energy_adjustments=[ConstantEnergyAdjustment(-0.7)])
    e = entry_from_computed(computed, "qe-pbe-x")
    assert e.energy == -12.0 and not math.isclose(computed.energy, e.energy)
