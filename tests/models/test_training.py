"""Splits, reference energies, the training recipe, fine-tuning and checkpoints."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch

from gnomon.models.ensemble import ModelSpec, build_member
from gnomon.models.training import (
    Sample,
    TrainConfig,
    Trainer,
    early_stopping,
    fit_element_references,
    split_by_group,
    torch_threads,
    training_data_hash,
)
from tests.models.conftest import REFS, TINY_SPEC, tiny_config, toy_samples


def test_split_by_composition_keeps_formulas_apart():
    samples = toy_samples(80, seed=3)
    split = split_by_group(samples, 0.2, 0.2, "composition", seed=0)
    formulas = [
        {samples[i].reduced_formula for i in part} for part in (split.train, split.val, split.test)
    ]
    assert all(formulas)
    assert (
        not (formulas[0] & formulas[1])
        and not (formulas[0] & formulas[2])
        and not (formulas[1] & formulas[2])
    )
    assert sorted(split.train + split.val + split.test) == list(range(80))


def test_split_by_chemsys_keeps_systems_apart():
    samples = toy_samples(80, seed=4)
    split = split_by_group(samples, 0.2, 0.2, "chemsys", seed=1)
    systems = [{samples[i].chemsys for i in part} for part in (split.train, split.val, split.test)]
    assert not (systems[0] & systems[1]) and not (systems[0] & systems[2])


def test_split_always_trains_on_elemental_structures():
    from pymatgen.core import Lattice, Structure

    elements = [
        Sample.from_structure(f"el-{el}", Structure(Lattice.cubic(3.0), [el], [[0, 0, 0]]), -3.0)
        for el in ("Na", "Cl", "Cu")
    ]
    samples = toy_samples(60, seed=4) + elements
    for by in ("composition", "chemsys"):
        for seed in range(6):  # any draw: the elements never land in validation or test
            split = split_by_group(samples, 0.4, 0.3, by, seed=seed)
            assert set(range(60, 63)) <= set(split.train)
            assert sorted(split.train + split.val + split.test) == list(range(63))
            assert split.val and split.test


def test_split_of_a_first_round_with_few_compounds_draws_elements_too():
    from pymatgen.core import Lattice, Structure

    def one(key, species, energy):
        return Sample.from_structure(
            key,
            Structure(Lattice.cubic(3.0), species, [[0, 0, 0], [0.5, 0.5, 0.5]][: len(species)]),
            energy,
        )

    samples = [one("Li", ["Li"], -1.9), one("O", ["O"], -4.9), one("LiO", ["Li", "O"], -3.0)]
    split = split_by_group(samples, 0.15, 0.0, "composition", seed=0)
    assert len(split.val) == 1 and len(split.train) == 2  # one compound alone cannot validate


def test_split_refuses_too_few_groups():
    pool = toy_samples(30)
    samples = [s for s in pool if s.reduced_formula == pool[0].reduced_formula]
    with pytest.raises(ValueError, match="cannot split"):
        split_by_group(samples, 0.2, 0.2, "composition", seed=0)


def test_element_references_recover_a_linear_energy():
    rng = np.random.default_rng(0)
    comps = [
        {el: float(rng.integers(1, 4)) for el in rng.choice(list(REFS), 2, replace=False)}
        for _ in range(60)
    ]
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
    assert _same_weights(a.ensemble.members[0], b.ensemble.members[0])
    assert a.training_data_hash == b.training_data_hash == training_data_hash(samples)


def test_training_learns_the_volume_dependence():
    # the reference fit alone cannot see volume; the network must
    samples = toy_samples(120, seed=7)
    spec = ModelSpec(hidden=16, num_layers=2, num_radial=8, cutoff=4.0)
    result = Trainer(spec, tiny_config(ensemble_size=1, max_epochs=25, patience=25, lr=5e-3)).fit(
        samples
    )
    assert result.metrics["val"]["mae"] < 0.6 * result.metrics["reference_mae_val"]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fine_tune_starts_from_the_parent(tiny_result):
    # with a learning rate of 0 an epoch moves no weight: what a member ends with is what it
    # started from
    parent = tiny_result.ensemble
    samples = toy_samples(48) + toy_samples(16, seed=9)
    cfg = tiny_config(max_epochs=1, lr=0.0)
    child = Trainer(TINY_SPEC, cfg).fit(samples, parent=parent).ensemble
    scratch = Trainer(TINY_SPEC, cfg).fit(samples).ensemble
    assert child.hparams == parent.hparams
    for k in range(parent.size):
        assert _same_weights(child.members[k], parent.members[k])
        assert not _same_weights(scratch.members[k], parent.members[k])
    # and the weights of a child that did train moved away from the parent's
    trained = Trainer(TINY_SPEC, tiny_config(max_epochs=1)).fit(samples, parent=parent).ensemble
    assert not _same_weights(trained.members[0], parent.members[0])


def test_members_write_best_and_last_checkpoints(tiny_result, tmp_path):
    samples = toy_samples(48) + toy_samples(16, seed=9)
    cfg = tiny_config(max_epochs=1, checkpoint_dir=str(tmp_path / "ckpt"), bootstrap=True)
    child = Trainer(TINY_SPEC, cfg).fit(samples, parent=tiny_result.ensemble)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "member0-best.pt",
        "member0-last.pt",
        "member1-best.pt",
        "member1-last.pt",
    ]
    best = torch.load(tmp_path / "ckpt" / "member1-best.pt", weights_only=True)
    assert all(torch.equal(best[k], v) for k, v in child.ensemble.members[1].state_dict().items())


def test_without_a_validation_split_the_training_loss_picks_the_epoch():
    seen: list[tuple[str, float]] = []
    trainer = Trainer(
        TINY_SPEC,
        tiny_config(ensemble_size=1, val_fraction=0.0, max_epochs=3),
        progress=lambda name, epoch, total, monitor, value: seen.append((monitor, value)),
    )
    result = trainer.fit(toy_samples(24))
    m = result.metrics
    history = m["members"][0]
    assert m["n_val"] == 0 and m["monitor"] == history["monitor"] == "train_loss"
    assert "best_val_mae" not in history and "val" not in m
    assert {monitor for monitor, _ in seen} == {"train_loss"}
    assert history["best_train_loss"] == pytest.approx(min(v for _, v in seen), abs=1e-6)
    assert history["best_epoch"] == 1 + min(range(len(seen)), key=lambda i: seen[i][1])
    assert early_stopping(m) == ("train_loss", [history["best_train_loss"]])


def test_with_a_validation_split_the_validation_mae_picks_the_epoch(tiny_result):
    m = tiny_result.metrics
    assert m["monitor"] == "val_mae"
    assert all(h["monitor"] == "val_mae" and h["best_val_mae"] > 0 for h in m["members"])


def test_early_stopping_reads_histories_stored_before_the_monitor_was():
    old = {"seed": 0, "epochs": 3, "best_epoch": 2, "best_val_mae": 0.25}
    assert early_stopping({"n_val": 5, "members": [old]}) == ("val_mae", [0.25])
    # without a validation split that number was the training loss, whatever its name said
    assert early_stopping({"n_val": 0, "members": [old]}) == ("train_loss", [0.25])


def test_training_threads_are_given_back_to_the_caller():
    during: list[int] = []
    trainer = Trainer(
        TINY_SPEC,
        tiny_config(ensemble_size=1, max_epochs=1, threads=1),
        progress=lambda *_: during.append(torch.get_num_threads()),
    )
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        trainer.fit(toy_samples(24))
        assert during == [1] and torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="at least 3 usable samples"):
            trainer.fit(toy_samples(2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(caller)


def test_refactored_recipe_gives_the_weights_of_fit():
    """prepare / train_member / calibrate, called by hand, give what fit gives (same seeds)."""
    samples = toy_samples(24, seed=5)
    cfg = tiny_config(ensemble_size=1, max_epochs=2)
    fitted = Trainer(TINY_SPEC, cfg).fit(samples)
    trainer = Trainer(TINY_SPEC, cfg)
    # fit trains under cfg.threads; float sums differ with the thread count, so match it
    with torch_threads(cfg.threads):
        data = trainer.prepare(samples)
        torch.manual_seed(cfg.seed)
        model = build_member(data.kind, data.hparams)
        model, history = trainer.train_member(
            data, model, index=0, seed=cfg.seed, lr=cfg.lr, device=torch.device("cpu")
        )
    assert _same_weights(model, fitted.ensemble.members[0])
    assert history == fitted.metrics["members"][0]


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
        ["LiCl", toy_samples(1)[0].structure, "FeS"]
    )
    assert by_formula.rejected is None and by_structure.rejected is None
    assert unseen.rejected == "unsupported element Fe, S: not in the model's training data"


def test_config_refuses_a_training_without_epochs():
    with pytest.raises(ValueError, match="max_epochs must be at least 1"):
        TrainConfig(max_epochs=0)


def test_settings_and_cli_take_their_model_defaults_from_the_dataclasses():
    from gnomon.commands.model import train as train_command
    from gnomon.config import ModelConfig

    spec, train, campaign = ModelSpec(), TrainConfig(), ModelConfig()
    assert (campaign.hidden, campaign.layers, campaign.cutoff) == (
        spec.hidden,
        spec.num_layers,
        spec.cutoff,
    )
    assert (campaign.ensemble_size, campaign.max_epochs, campaign.patience) == (
        train.ensemble_size,
        train.max_epochs,
        train.patience,
    )
    cli = {name: p.default for name, p in inspect.signature(train_command).parameters.items()}
    assert (cli["hidden"], cli["layers"], cli["cutoff"], cli["readout"]) == (
        spec.hidden,
        spec.num_layers,
        spec.cutoff,
        spec.readout,
    )
    assert (cli["ensemble"], cli["epochs"], cli["patience"], cli["lr"], cli["val_fraction"]) == (
        train.ensemble_size,
        train.max_epochs,
        train.patience,
        train.lr,
        train.val_fraction,
    )


def test_reading_the_defaults_does_not_load_torch():
    """Every `gnomon` command reads the settings; only those that run a network need torch."""
    code = (
        "import sys, gnomon.config, gnomon.commands.model, gnomon.models; "
        "print(sorted(m for m in ('torch', 'torch_geometric') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
