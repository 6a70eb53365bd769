"""The calibrated mlip stage's energies: in the campaign's scheme, on the campaign's hull, as
pymatgen computes it; fitted only on the systems it may see."""

from __future__ import annotations

import json
import random

import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from gnomon.pipeline.thermo.calibration import (
    Calibration,
    CalibrationError,
    Pair,
    calibrated_e_above_hull,
    fit_calibration,
)

MU = {"Li": 0.4, "O": -1.3, "Na": 0.7, "S": -0.6, "Fe": -2.1}
FORMULAS = ["Li", "O2", "Li2O", "LiO2", "Li2O2", "Li3O", "Na", "S", "Na2S", "NaS", "NaS2",
            "Na3S", "Fe", "FeS", "FeS2", "Fe2S", "Fe3S4", "FeO", "Fe2O3", "Fe3O4", "NaO",
            "Na2O", "LiS", "Li2S", "Li3S", "NaFeO2", "LiFeO2", "Na2O2", "LiS2", "FeO2"]


def _truth(formula: str, e_mlip: float, slope: float = 1.0) -> float:
    comp = Composition(formula)
    return slope * e_mlip + sum(comp.get_atomic_fraction(el) * MU[str(el)] for el in comp)


def _pairs(seed: int = 0, slope: float = 1.0, noise: float = 0.0) -> list[Pair]:
    rng = random.Random(seed)
    out = []
    for k, f in enumerate(FORMULAS * 2):
        e_m = rng.uniform(-7.0, -2.0)
        e_c = _truth(f, e_m, slope) + rng.gauss(0.0, noise) if noise else _truth(f, e_m, slope)
        out.append(Pair(f"{f}-{k}", Composition(f), e_m, e_c))
    return out


def _campaign_hull() -> PhaseDiagram:
    """The campaign's own hull of Li-O: elements and Li2O in its scheme."""
    return PhaseDiagram([PDEntry("Li", -1.9), PDEntry("O2", -2 * 4.9), PDEntry("Li2O", -3 * 4.8)])


@pytest.mark.parametrize("e_mlip", [-3.0, -4.4, -6.5])
def test_the_calibrated_e_above_hull_is_the_campaigns_and_equals_pymatgens(e_mlip):
    calibration = Calibration("mlip-sevennet-0", "mlip-chgnet-0.3.0",
                              mu={"Li": 0.3, "O": -0.8}, slope=0.95)
    pd = _campaign_hull()
    value = calibrated_e_above_hull(calibration, pd, "LiO2", e_mlip)

    # by hand: the calibrated energy in the campaign's scheme ...
    e_campaign = 0.95 * e_mlip + (0.3 * 1 + -0.8 * 2) / 3
    assert calibration.energy_per_atom("LiO2", e_mlip) == pytest.approx(e_campaign)
    # ... judged as pymatgen judges an entry of that scheme against that hull
    entry = PDEntry("LiO2", 3 * e_campaign)
    assert value == pytest.approx(pd.get_e_above_hull(entry, allow_negative=True), abs=1e-9)
    if value > 0:  # above the hull: the same figure with the entry in the diagram
        with_it = PhaseDiagram([*pd.all_entries, entry])
        assert value == pytest.approx(with_it.get_e_above_hull(entry), abs=1e-9)


def test_offsets_and_slope_are_recovered_and_the_slope_is_kept_only_where_it_helps():
    offsets = fit_calibration(_pairs(), source_scheme="a", target_scheme="b")
    assert offsets.slope == 1.0 and offsets.mae == pytest.approx(0.0, abs=1e-9)
    assert offsets.mu == pytest.approx(MU)
    linear = fit_calibration(_pairs(slope=0.9, noise=0.01), source_scheme="a",
                             target_scheme="b")
    assert linear.slope == pytest.approx(0.9, abs=0.02)
    assert linear.validation["linear"] < linear.validation["offsets"]
    assert linear.n_entries == 2 * len(FORMULAS) and linear.mae < 0.02


def test_held_out_systems_never_enter_the_fit():
    pairs = _pairs()
    # the held-out system's labels are poison: were they fitted, Fe and S would move
    poisoned = [*pairs, *(Pair(f"FeS-h{k}", Composition("FeS"), -5.0, +9.0) for k in range(8))]
    held_out = ["S-Fe"]  # any element order names the system
    fit = fit_calibration(poisoned, source_scheme="a", target_scheme="b", exclude=held_out)
    clean = fit_calibration([p for p in pairs if p.chemsys != "Fe-S"], source_scheme="a",
                            target_scheme="b")
    assert fit.mu == pytest.approx(clean.mu) and fit.n_entries == clean.n_entries
    assert "Fe-S" not in fit.systems and fit.excluded == ["Fe-S"]


@pytest.mark.parametrize("seed", range(5))
def test_no_excluded_system_is_fitted_over_random_splits(seed):
    rng = random.Random(seed)
    pairs = _pairs(seed, noise=0.02)
    systems = sorted({p.chemsys for p in pairs if "-" in p.chemsys})
    held = rng.sample(systems, 3)
    fit = fit_calibration(pairs, source_scheme="a", target_scheme="b", exclude=held, seed=seed)
    assert not set(held) & set(fit.systems)
    assert fit.n_entries + fit.n_outliers == sum(p.chemsys not in held for p in pairs)


def test_a_pair_one_potential_failed_on_is_dropped_not_learned():
    pairs = [*_pairs(), Pair("GeI3-blowup", Composition("LiO2"), -40.0, -3.0)]
    fit = fit_calibration(pairs, source_scheme="a", target_scheme="b", slope=False)
    assert fit.n_outliers == 1 and fit.mu == pytest.approx(MU)


def test_too_few_pairs_and_unknown_elements_are_refused():
    with pytest.raises(CalibrationError, match="too few"):
        fit_calibration(_pairs()[:4], source_scheme="a", target_scheme="b")
    with pytest.raises(CalibrationError, match="too few"):
        fit_calibration(_pairs(), source_scheme="a", target_scheme="b",
                        exclude=sorted({p.chemsys for p in _pairs()}))
    fit = fit_calibration(_pairs(), source_scheme="a", target_scheme="b")
    assert not fit.covers("LiCl")
    with pytest.raises(CalibrationError, match="Cl"):
        fit.energy_per_atom("LiCl", -3.0)


def test_the_fit_is_stored_and_read_back_whole():
    fit = fit_calibration(_pairs(noise=0.01), source_scheme="mlip-sevennet-0",
                          target_scheme="mlip-chgnet-0.3.0", exclude=["Fe-S"])
    again = Calibration.from_dict(json.loads(json.dumps(fit.as_dict())))
    assert again == fit
    assert again.energy_per_atom("Li2O", -4.0) == fit.energy_per_atom("Li2O", -4.0)
