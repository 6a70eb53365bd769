"""Splits, reference energies, the training recipe, fine-tuning and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from gnomon.models.ensemble import ModelSpec
from gnomon.models.training import (
    Sample,
    Trainer,
    fit_element_references,
    split_by_group,
    training_data_hash,
)
from tests.models.conftest import REFS, TINY_SPEC, tiny_config, toy_samples


def test_split_by_composition_keeps_formulas_apart():
    samples = toy_samples(80, seed=3)
    split = split_by_group(samples, 0.2, 0.2, "composition", seed=0)
    formulas = [{samples[i].reduced_formula for i in part} for part in (split.train, split.val, split.test)]
    assert all(formulas)
    assert not (formulas[0] & formulas[1]) and not (formulas[0] & formulas[2]) and not (formulas[1] & formulas[2])
    assert sorted(split.train + split.val + split.test) == list(range(80))


def test_split_by_chemsys_keeps_systems_apart():
    samples = toy_samples(80, seed=4)
    split = split_by_group(samples, 0.2, 0.2, "chemsys", seed=1)
    systems = [{samples[i].chemsys for i in part} for part in (split.train, split.val, split.test)]
    assert not (systems[0] & systems[1]) and not (systems[0] & systems[2])


def test_split_refuses_too_few_groups():
    pool = toy_samples(30)
    samples = [s for s in pool if s.reduced_formula == pool[0].reduced_formula]
    with pytest.raises(ValueError, match="cannot split"):
        split_by_group(samples, 0.2, 0.2, "composition", seed=0)


def test_element_references_recover_a_linear_energy():
    rng = np.random.default_rng(0)
    comps = [{el: float(rng.integers(1, 4)) for el in rng.choice(list(REFS), 2, replace=False)}
             for _ in range(60)]
    energies = np.array([sum(REFS[el] * n for el, n in c.items()) / sum(c.values()) for c in comps])
    refs, seen = fit_element_references(comps, energies)
    from gnomon.models.graphs import ATOMIC_NUMBER

    for el, mu in REFS.items():
        assert seen[ATOMIC_NUMBER[el]] and refs[ATOMIC_NUMBER[el]] == pytest.approx(mu, abs=1e-4)
    assert seen.sum() == len(REFS)


def test_trained_ensemble_records_what_it_needs(tiny_result):
    ens, m = tiny_result.ensemble, tiny_result.metrics
    assert ens.size == 2 and ens.kind == "gnn"
    assert ens.hparams["avg_num_neighbors"] > 1  # measured on the training graphs
    assert m["n_train"] + m["n_val"] == 48 and m["n_val"] > 0
    assert ens.sigma_scale > 0 and ens.calibration["sigma_scale"] == ens.sigma_scale
    assert {"coverage_1sigma", "coverage_2sigma", "miscalibration_area", "mae"} <= set(m["val"])
    assert m["val"]["coverage_1sigma"] == pytest.approx(0.68, abs=0.2)
    assert [h["seed"] for h in m["members"]] == [0, 1000]
    train, val = set(tiny_result.split["train"]), set(tiny_result.split["val"])
    assert train and val and not (train & val)


def test_training_is_reproducible_with_a_seed():
    samples = toy_samples(24, seed=5)
    a = Trainer(TINY_SPEC, tiny_config(ensemble_size=1, max_epochs=2)).fit(samples)
    b = Trainer(TINY_SPEC, tiny_config(ensemble_size=1, max_epochs=2)).fit(samples)
    assert a.metrics["val"]["mae"] == b.metrics["val"]["mae"]
    assert a.training_data_hash == b.training_data_hash == training_data_hash(samples)


def test_training_learns_the_volume_dependence():
    # the reference fit alone cannot see volume; the network must
    samples = toy_samples(120, seed=7)
    spec = ModelSpec(hidden=16, num_layers=2, num_radial=8, cutoff=4.0)
    result = Trainer(spec, tiny_config(ensemble_size=1, max_epochs=25, patience=25, lr=5e-3)).fit(samples)
    assert result.metrics["val"]["mae"] < 0.6 * result.metrics["reference_mae_val"]


def test_fine_tune_starts_from_the_parent_and_checkpoints(tiny_result, tmp_path):
    samples = toy_samples(48) + toy_samples(16, seed=9)
    cfg = tiny_config(max_epochs=1, checkpoint_dir=str(tmp_path / "ckpt"), bootstrap=True)
    child = Trainer(TINY_SPEC, cfg).fit(samples, parent=tiny_result.ensemble)
    assert child.ensemble.hparams == tiny_result.ensemble.hparams
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "member0-best.pt", "member0-last.pt", "member1-best.pt", "member1-last.pt"]


def test_unusable_samples_are_set_aside_with_reasons():
    from pymatgen.core import Lattice, Structure

    lonely = Structure(Lattice.cubic(15), ["Na"], [[0, 0, 0]])
    samples = toy_samples(24) + [Sample.from_structure("lonely", lonely, -1.0)]
    samples.append(Sample("nostruct", -1.0, {"Na": 1.0}, None, "Na", "Na"))
    result = Trainer(TINY_SPEC, tiny_config(ensemble_size=1, max_epochs=1)).fit(samples)
    assert "no neighbour" in result.rejected["lonely"]
    assert result.rejected["nostruct"] == "entry has no structure"


def test_composition_kind_trains():
    spec = ModelSpec(kind="composition", hidden=8, num_layers=2)
    result = Trainer(spec, tiny_config(max_epochs=2)).fit(toy_samples(40))
    assert result.ensemble.kind == "composition" and result.metrics["val"]["n"] > 0
    from gnomon.models.screening import Screener

    by_formula, by_structure, unseen = Screener(result.ensemble).predict(
        ["LiCl", toy_samples(1)[0].structure, "FeS"])
    assert by_formula.rejected is None and by_structure.rejected is None
    assert unseen.rejected == "unsupported element Fe, S: not in the model's training data"
