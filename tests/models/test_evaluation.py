"""Splits that never leak a chemical system, metrics against numbers worked out by hand, the
Matbench Discovery e_above_hull convention, learning curves, and `gnomon model evaluate`."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymatgen.core import Composition, Lattice, Structure

from gnomon.models.evaluation import (
    MIN_SYSTEMS,
    LearningCurve,
    Predictions,
    SystemSplit,
    arity,
    canonical_chemsys,
    chemsys_kfold,
    chemsys_split,
    energy_metrics,
    evaluation_report,
    held_out_split,
    hull_distances,
    learning_curve,
    log_spaced_sizes,
    loglog_slope,
    predicted_e_above_hull,
    random_split,
    stability_metrics,
    uncertainty_metrics,
)
from gnomon.models.evaluation_plots import plot_learning_curve
from gnomon.pipeline.thermo.entries import entry_from_structure

# -- splits ----------------------------------------------------------------------------------
ELEMENTS = ["Li", "Na", "K", "Mg", "Ca", "O", "S", "Cl", "F", "Fe"]
system = st.lists(st.sampled_from(ELEMENTS), min_size=1, max_size=4, unique=True).map(
    lambda els: "-".join(els)  # deliberately unsorted: the split must canonicalise
)
systems = st.lists(system, min_size=2, max_size=60).filter(
    lambda xs: len({canonical_chemsys(x) for x in xs}) >= 2
)


def _sides(items: list[str], idx: list[int]) -> set[str]:
    return {canonical_chemsys(items[i]) for i in idx}


@settings(max_examples=100, deadline=None)
@given(
    items=systems,
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 10_000),
    stratify=st.booleans(),
)
def test_chemsys_split_never_puts_a_system_on_both_sides(items, fraction, seed, stratify):
    split = chemsys_split(items, fraction, seed, stratify=stratify)
    train, test = _sides(items, split.train), _sides(items, split.test)
    assert not train & test and not split.leaks
    assert sorted(split.train + split.test) == list(range(len(items)))  # every item, once
    assert train and test
    assert set(split.test_systems) == test and set(split.train_systems) == train


@settings(max_examples=60, deadline=None)
@given(items=systems, k=st.integers(2, 5), seed=st.integers(0, 10_000))
def test_kfold_test_sets_partition_the_systems_and_never_leak(items, k, seed):
    n_systems = len({canonical_chemsys(x) for x in items})
    if n_systems < k:
        with pytest.raises(ValueError, match="at least"):
            chemsys_kfold(items, k, seed)
        return
    folds = chemsys_kfold(items, k, seed)
    assert len(folds) == k
    seen: list[str] = []
    for fold in folds:
        assert not _sides(items, fold.train) & _sides(items, fold.test)
        seen.extend(fold.test_systems)
    assert sorted(seen) == sorted({canonical_chemsys(x) for x in items})  # each system once
    sizes = [len(f.test_systems) for f in folds]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=60, deadline=None)
@given(items=systems, data=st.data())
def test_fixed_held_out_list_never_leaks(items, data):
    names = sorted({canonical_chemsys(x) for x in items})
    held = data.draw(
        st.lists(st.sampled_from(names), min_size=1, max_size=len(names) - 1, unique=True)
    )
    split = held_out_split(items, held + ["Xe-Kr"])  # unknown systems are ignored
    assert set(split.test_systems) == set(held)
    assert not _sides(items, split.train) & _sides(items, split.test)


def test_split_is_stratified_by_arity_and_seeded():
    items = (
        [f"A{i}" for i in range(10)]
        + [f"A{i}-B{i}" for i in range(20)]
        + [f"A{i}-B{i}-C{i}" for i in range(10)]
    )
    split = chemsys_split(items, 0.2, seed=3)
    by_arity = {}
    for s in split.test_systems:
        by_arity[arity(s)] = by_arity.get(arity(s), 0) + 1
    assert by_arity == {1: 2, 2: 4, 3: 2}
    assert chemsys_split(items, 0.2, seed=3) == split
    assert chemsys_split(items, 0.2, seed=4).test_systems != split.test_systems


def test_random_split_is_in_distribution_and_covers_every_item():
    items = ["Li-O"] * 10 + ["Na-Cl"] * 10
    split = random_split(items, 0.25, seed=0)
    assert len(split.test) == 5 and sorted(split.train + split.test) == list(range(20))
    assert split.kind == "random"


def test_splits_refuse_what_cannot_be_split():
    with pytest.raises(ValueError, match="at least 2 systems"):
        chemsys_split(["Li-O", "O-Li"], 0.2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        chemsys_split(["Li-O", "Na-Cl"], 1.0)


# -- metrics on a hand-computed example --------------------------------------------------------
# Eight structures. Errors (pred - true) are -0.1, 0.05, 0.2, -0.3, 0, -0.1, 0.1, -0.2 eV/atom.
E_TRUE = [-1.0, -2.0, -3.0, -1.5, -2.5, -0.5, -4.0, -1.0]
E_PRED = [-1.1, -1.95, -2.8, -1.8, -2.5, -0.6, -3.9, -1.2]
HULL_TRUE = [0.0, -0.02, 0.0, 0.10, 0.05, 0.20, 0.01, 0.30]
# predicted e_above_hull = true + error:
HULL_PRED = [-0.1, 0.03, 0.2, -0.2, 0.05, 0.1, 0.11, 0.1]
# truly stable: 0, 1, 2; predicted stable: 0, 3  ->  TP 1 (0), FN 2 (1, 2), FP 1 (3), TN 4
SIGMA = [0.2, 0.04, 0.09, 0.2, 0.1, 0.06, 0.2, 0.15]
# |error| / σ = 0.5, 1.25, 2.22, 1.5, 0, 1.67, 0.5, 1.33


def test_energy_metrics_by_hand():
    m = energy_metrics(E_TRUE, E_PRED)
    assert m["n"] == 8
    assert m["mae"] == pytest.approx(1.05 / 8)  # 0.1+0.05+0.2+0.3+0+0.1+0.1+0.2
    assert m["rmse"] == pytest.approx(math.sqrt(0.2025 / 8))  # squares sum to 0.2025
    # mean of E_TRUE is -1.9375; Σ(true - mean)² = 9.71875
    assert m["r2"] == pytest.approx(1 - 0.2025 / 9.71875)


def test_predicted_e_above_hull_is_true_plus_error():
    assert predicted_e_above_hull(HULL_TRUE, E_TRUE, E_PRED) == pytest.approx(HULL_PRED)


def test_stability_metrics_by_hand():
    m = stability_metrics(HULL_TRUE, HULL_PRED)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 2, 1, 4)
    assert m["precision"] == pytest.approx(1 / 2)
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(0.4)  # 2 · (1/2 · 1/3) / (1/2 + 1/3)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["prevalence"] == pytest.approx(3 / 8)
    assert m["daf"] == pytest.approx(4 / 3)  # (1/2) / (3/8)


def test_stability_counts_zero_as_stable_and_a_missing_prediction_as_unstable():
    m = stability_metrics([0.0, 0.0, 0.1, float("nan")], [0.0, float("nan"), 0.0, -1.0])
    # 0: on the threshold both ways -> TP; 1: no prediction -> FN; 2: FP; 3: no truth -> left out
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["n_stability"]) == (1, 1, 1, 0, 3)
    none_predicted = stability_metrics([0.0, 0.1], [0.5, 0.5])
    assert math.isnan(none_predicted["precision"]) and none_predicted["recall"] == 0.0
    assert math.isnan(none_predicted["f1"]) and math.isnan(none_predicted["daf"])


def test_uncertainty_metrics_by_hand():
    m = uncertainty_metrics(E_TRUE, E_PRED, SIGMA)
    assert m["coverage_1sigma"] == pytest.approx(3 / 8)  # ratios 0.5, 0, 0.5
    assert m["coverage_2sigma"] == pytest.approx(7 / 8)  # all but 2.22
    # Gaussian coverage erf(z/√2) of each |error|/σ, from a table: the level p at which each
    # error starts to count as covered
    starts = [0.3829, 0.7887, 0.9737, 0.8664, 0.0, 0.9044, 0.3829, 0.8176]
    levels = [k / 100 for k in range(1, 100)]
    area = sum(abs(sum(c <= p for c in starts) / 8 - p) for p in levels) / 99
    assert m["miscalibration_area"] == pytest.approx(area)


def test_report_holds_every_metric_and_counts_refusals():
    pred = list(E_PRED)
    pred[3] = float("nan")  # the model refused structure 3 (a false positive before)
    r = evaluation_report(E_TRUE, pred, HULL_TRUE, SIGMA)
    assert r["n"] == 8 and r["n_missing"] == 1
    assert r["mae"] == pytest.approx(0.75 / 7)
    assert (r["tp"], r["fp"], r["tn"]) == (1, 0, 5)  # now predicted unstable: a true negative
    assert r["precision"] == 1.0 and r["daf"] == pytest.approx(8 / 3)
    assert r["coverage_1sigma"] == pytest.approx(3 / 7)


# -- the hull of the others ------------------------------------------------------------------
def _entry(formula: str, energy_per_atom: float, tag: str):
    comp = Composition(formula)
    species = [el for el, n in comp.items() for _ in range(int(n))]
    s = Structure(
        Lattice.cubic(3.0 * len(species)),
        species,
        [[i / len(species), 0, 0] for i in range(len(species))],
    )
    return entry_from_structure(s, energy_per_atom * len(species), "toy", source=tag)


def test_hull_distances_measure_each_entry_against_the_others():
    entries = [
        _entry("Li", -2.0, "li"),
        _entry("Cl", -1.0, "cl"),
        _entry("LiCl", -2.5, "licl"),  # on the hull, 1.0 below Li + Cl (-1.5)
        _entry("LiCl", -2.4, "licl-b"),  # a polymorph 0.1 above it
        _entry("LiCl3", -1.4, "licl3"),  # hull at LiCl3 (x_Cl = 3/4): LiCl/Cl mix = -1.75
        _entry("Na", -1.0, "na"),
    ]
    d = hull_distances(entries)
    assert d[2] == pytest.approx(-0.1)  # its competitor is the polymorph, not Li + Cl
    assert d[3] == pytest.approx(0.1)
    assert d[4] == pytest.approx(0.35)
    assert d[0] == 0.0 and d[1] == 0.0 and d[5] == 0.0  # sole elemental references
    # K has no reference entry: KCl has no hull, NaN
    lonely = hull_distances([_entry("KCl", -2.0, "kcl")], entries)
    assert math.isnan(lonely[0])
    # predicted against the others' hull: E_pred - hull energy = true distance + error
    e_pred = -2.45  # the model puts LiCl 0.05 too high: still below its polymorph
    assert predicted_e_above_hull([d[2]], [-2.5], [e_pred])[0] == pytest.approx(-0.05)


# -- learning curves -------------------------------------------------------------------------
def test_log_spaced_sizes_reach_all_systems():
    assert log_spaced_sizes(100, 5) == [2, 5, 14, 38, 100]  # 2 · 50^(k/4)
    sizes = log_spaced_sizes(8, 5)
    assert len(sizes) >= 5 and sizes[-1] == 8 and sizes == sorted(set(sizes))
    assert log_spaced_sizes(3, 5) == [2, 3]


def test_loglog_slope_recovers_a_power_law():
    x = np.array([2, 4, 8, 16, 32])
    slope, intercept = loglog_slope(x, 3.0 * x**-0.5)
    assert slope == pytest.approx(-0.5) and math.exp(intercept) == pytest.approx(3.0)


def test_learning_curve_trains_on_nested_training_systems(tmp_path):
    rng = np.random.default_rng(0)
    chemsys = [f"A{i % 40}-B" for i in range(200)]
    energy = rng.normal(size=200)
    hull = np.abs(rng.normal(size=200)) * 0.1 - 0.02
    split = chemsys_split(chemsys, 0.2, seed=0)
    calls: list[set[str]] = []

    def fit_predict(train_idx, test_idx):
        trained = {canonical_chemsys(chemsys[i]) for i in train_idx}
        assert not trained & set(split.test_systems)
        calls.append(trained)
        noise = 1.0 / len(trained)  # error falls as 1/systems: slope -1
        sign = np.where(np.arange(len(test_idx)) % 2 == 0, 1.0, -1.0)
        relaxed = Predictions(energy[test_idx] + sign * noise, np.full(len(test_idx), 1.5 * noise))
        return {"relaxed": relaxed, "unrelaxed": Predictions(energy[test_idx] + sign * 2 * noise)}

    curve = learning_curve(chemsys, energy, split, fit_predict, e_above_hull_true=hull)
    assert [len(c) for c in calls] == [r["n_systems"] for r in curve.rows[::2]]
    assert calls[-1] == set(split.train_systems)
    assert all(a <= b for a, b in zip(calls, calls[1:], strict=False))  # nested
    assert len(calls) >= 5
    assert curve.slopes["relaxed"] == pytest.approx(-1.0)
    assert curve.slopes["unrelaxed"] == pytest.approx(-1.0)
    assert curve.rows[0]["coverage_1sigma"] == 1.0 and "f1" in curve.rows[0]
    assert math.isnan(curve.rows[1]["coverage_1sigma"])  # no σ for the unrelaxed set
    unrelaxed = [r for r in curve.table() if r["input"] == "unrelaxed"]
    assert unrelaxed[-1]["mae"] == pytest.approx(2 / len(split.train_systems))
    png = plot_learning_curve(curve, tmp_path / "curve.png", title="toy")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learning_curve_keeps_the_elemental_references_in_every_training_set():
    # two elements with one structure each, 10 binaries with 6 each; sizes count binaries
    chemsys = ["A", "B"] + [f"A-C{i}" for i in range(10) for _ in range(6)]
    energy = np.arange(len(chemsys), dtype=float)
    split = SystemSplit(
        kind="fixed",
        train=list(range(50)),
        test=list(range(50, 62)),
        train_systems=["A", "B"] + [f"A-C{i}" for i in range(8)],
        test_systems=["A-C8", "A-C9"],
    )
    calls: list[set[str]] = []

    def fit_predict(train_idx, test_idx):
        calls.append({canonical_chemsys(chemsys[i]) for i in train_idx})
        return Predictions(energy[test_idx] + 0.1)

    curve = learning_curve(chemsys, energy, split, fit_predict, sizes=[1, 2, 8])
    assert all({"A", "B"} <= c for c in calls)
    assert [len(c) - 2 for c in calls] == [1, 2, 8] == [r["n_systems"] for r in curve.rows]
    with pytest.raises(ValueError, match="exceeds the 8 training systems of compounds"):
        learning_curve(chemsys, energy, split, fit_predict, sizes=[9])


def test_learning_curve_plot_of_a_single_input(tmp_path):
    curve = LearningCurve(
        [{"input": "relaxed", "n_systems": n, "mae": 1 / n, "f1": 0.5} for n in (2, 4, 8)],
        {"relaxed": -1.0},
        {"relaxed": 0.0},
    )
    assert plot_learning_curve(curve, tmp_path / "a" / "c.png").exists()


# -- `gnomon model evaluate` -----------------------------------------------------------------
def _db(url: str, n: int = 40, seed: int = 5) -> str:
    from gnomon.storage import open_repository
    from tests.models.conftest import toy_energy, toy_structures

    repo = open_repository(url)
    structures = toy_structures(n, seed=seed)
    structures += [
        Structure(Lattice.cubic(3.0), [el], [[0, 0, 0]])
        for el in ("Li", "Na", "K", "Mg", "Cl", "Br", "O")
    ]
    repo.put(
        [
            entry_from_structure(s, toy_energy(s) * len(s), "mlip-toy-1", source=f"t{i}")
            for i, s in enumerate(structures)
        ]
    )
    repo.close()
    return url


TINY = [
    "--ensemble",
    "2",
    "--hidden",
    "8",
    "--layers",
    "1",
    "--cutoff",
    "4.0",
    "--epochs",
    "2",
    "--batch-size",
    "16",
]


def _invoke(*args: str):
    from typer.testing import CliRunner

    from gnomon.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_evaluate_trains_fresh_and_reports_both_splits(tmp_path, monkeypatch):
    monkeypatch.setenv("GNOMON_HOME", str(tmp_path / "home"))
    db = _db(f"sqlite:///{tmp_path / 'e.db'}")
    result = _invoke("model", "evaluate", *TINY, "--json", "--db", db)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    ind, ood = data["sets"]["in_distribution"], data["sets"]["out_of_distribution"]
    assert ind["split"] == "random" and ood["split"] == "chemsys"
    assert ind["n"] + ind["n_train"] == data["n_entries"] == 47
    for r in (ind, ood):
        for key in (
            "mae",
            "rmse",
            "r2",
            "precision",
            "recall",
            "f1",
            "daf",
            "coverage_1sigma",
            "coverage_2sigma",
            "miscalibration_area",
        ):
            assert key in r
    assert ood["n_systems"] == len(ood["test_systems"]) >= 1
    table = _invoke("model", "evaluate", *TINY, "--split", "chemsys", "--db", db)
    assert table.exit_code == 0, table.output
    assert "held-out systems (chemsys split)" in table.output
    assert "in-distribution" not in table.output
    assert re.search(r"DAF", table.output) and "F1" in table.output


def test_evaluate_a_registered_version_on_systems_it_never_saw(tmp_path, monkeypatch):
    monkeypatch.setenv("GNOMON_HOME", str(tmp_path / "home"))
    db = _db(f"sqlite:///{tmp_path / 'e.db'}")
    trained = _invoke("model", "train", *TINY, "--val-fraction", "0.3", "--db", db)
    assert trained.exit_code == 0, trained.output
    from gnomon.storage import open_repository
    from tests.models.conftest import cscl, toy_energy

    repo = open_repository(db)
    # toy structures always pair a cation with an anion: two anions make systems never trained on
    added = [cscl("Li", "Br", 3.1), cscl("Cl", "O", 3.0), cscl("Br", "O", 3.2)]
    repo.put(
        [
            entry_from_structure(s, toy_energy(s) * len(s), "mlip-toy-1", source=f"n{i}")
            for i, s in enumerate(added)
        ]
    )
    repo.close()
    result = _invoke("model", "evaluate", "--model", "gnn-mlip-toy-1-v1", "--json", "--db", db)
    assert result.exit_code == 0, result.output
    sets = json.loads(result.output)["sets"]
    assert sets["out_of_distribution"]["n"] >= 2 and sets["in_distribution"]["n"] >= 1
    assert sets["out_of_distribution"]["n_missing"] == 0  # their elements were all seen
    assert "training" not in sets
    total = sum(r["n"] for r in sets.values())
    everything = _invoke(
        "model",
        "evaluate",
        "--model",
        "gnn-mlip-toy-1-v1",
        "--include-training",
        "--json",
        "--db",
        db,
    )
    full = json.loads(everything.output)["sets"]
    assert full["training"]["n"] > 0
    assert sum(r["n"] for r in full.values()) == total + full["training"]["n"] == 50


def test_evaluate_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("GNOMON_HOME", str(tmp_path / "home"))
    from gnomon.storage import open_repository
    from tests.models.conftest import cscl, toy_energy

    few = f"sqlite:///{tmp_path / 'few.db'}"
    repo = open_repository(few)
    repo.put(
        [
            entry_from_structure(cscl("Li", "Cl", 3.0 + 0.01 * i), -3.0, "toy", source=f"{i}")
            for i in range(4)
        ]
    )
    repo.close()
    result = _invoke("model", "evaluate", "--db", few)
    assert result.exit_code == 1 and "4 entries" in result.output and "at least 10" in result.output

    narrow = f"sqlite:///{tmp_path / 'narrow.db'}"
    repo = open_repository(narrow)
    repo.put(
        [
            entry_from_structure(s, toy_energy(s) * len(s), "toy", source=f"{i}")
            for i, s in enumerate(
                [cscl("Li", "Cl", 2.8 + 0.05 * i) for i in range(8)]
                + [cscl("Na", "Cl", 2.8 + 0.05 * i) for i in range(4)]
            )
        ]
    )
    repo.close()
    result = _invoke("model", "evaluate", "--split", "chemsys", "--db", narrow)
    assert result.exit_code == 1
    assert "2 chemical system" in result.output and f"at least {MIN_SYSTEMS}" in result.output


def test_learning_curve_of_the_gnomon_ensemble_with_unrelaxed_inputs():
    from gnomon.models.evaluation import trainer_fit_predict
    from gnomon.models.training import Sample
    from tests.models.conftest import TINY_SPEC, tiny_config, toy_samples

    samples = toy_samples(48, seed=3)
    unrelaxed = []
    for s in samples:  # the same labels on a strained input structure
        structure = Structure.from_dict(s.structure)
        structure.scale_lattice(structure.volume * 1.1)
        unrelaxed.append(Sample.from_structure(s.key, structure, s.energy_per_atom))
    chemsys = [s.chemsys for s in samples]
    split = chemsys_split(chemsys, 0.25, seed=0)
    fit_predict = trainer_fit_predict(
        samples,
        TINY_SPEC,
        tiny_config(ensemble_size=1, max_epochs=2),
        inputs={"unrelaxed": unrelaxed},
    )
    curve = learning_curve(
        chemsys,
        [s.energy_per_atom for s in samples],
        split,
        fit_predict,
        sizes=[3, len(split.train_systems)],
    )
    assert [(r["input"], r["n_systems"]) for r in curve.rows] == [
        ("relaxed", 3),
        ("unrelaxed", 3),
        ("relaxed", len(split.train_systems)),
        ("unrelaxed", len(split.train_systems)),
    ]
    assert all(r["n"] == len(split.test) and np.isfinite(r["mae"]) for r in curve.rows)
    assert curve.rows[0]["mae"] != curve.rows[1]["mae"]  # the inputs differ, so do the errors
    assert set(curve.slopes) == {"relaxed", "unrelaxed"}
