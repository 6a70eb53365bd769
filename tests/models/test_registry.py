"""Saving, registering and reloading ensembles: the same numbers in another process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from gnomon.models.ensemble import Ensemble
from gnomon.models.registry import ModelNotFound, ModelRegistry
from gnomon.models.retrain import train_scheme
from gnomon.models.screening import Screener
from gnomon.pipeline.thermo.entries import entry_from_structure
from gnomon.storage import ModelVersion, open_repository
from tests.models.conftest import TINY_SPEC, tiny_config, toy_energy, toy_structures

SCHEME = "mlip-toy-1"


def test_register_and_load_round_trip(tiny_result, repo, tmp_path):
    registry = ModelRegistry(repo, tmp_path / "models")
    record = registry.register(tiny_result.ensemble, SCHEME,
                               training_data_hash=tiny_result.training_data_hash,
                               n_train=tiny_result.metrics["n_train"], metrics=tiny_result.metrics,
                               split=tiny_result.split)
    assert record.id == "gnn-mlip-toy-1-v1"
    stored = repo.get(ModelVersion, record.id)
    assert stored.training_data_hash == tiny_result.training_data_hash
    assert stored.calibration["sigma_scale"] == pytest.approx(tiny_result.ensemble.sigma_scale)
    assert stored.normalization["scale"] == pytest.approx(tiny_result.ensemble.normalization.scale)
    assert stored.config["hparams"] == tiny_result.ensemble.hparams
    assert stored.metrics["val"]["mae"] > 0
    assert registry.training_keys(stored) == set(tiny_result.split["train"])
    loaded = registry.load(record.id)
    structures = toy_structures(5, seed=21)
    a = Screener(tiny_result.ensemble).predict(structures)
    b = Screener(loaded).predict(structures)
    assert [(r.energy_per_atom, r.sigma) for r in a] == [(r.energy_per_atom, r.sigma) for r in b]
    # a second version gets the next number and becomes the latest
    again = registry.register(loaded, SCHEME)
    assert again.id == "gnn-mlip-toy-1-v2" and registry.latest(SCHEME).id == again.id
    assert [v.id for v in registry.versions(SCHEME)] == [record.id, again.id]
    with pytest.raises(ModelNotFound):
        registry.get("nope")
    with pytest.raises(ModelNotFound, match="no composition model"):
        registry.latest(SCHEME, kind="composition")


def test_weights_file_loads_without_pickled_code(tiny_ensemble, tmp_path):
    path = tmp_path / "e.pt"
    tiny_ensemble.save(path)
    state = torch.load(path, weights_only=True)
    assert state["format"] == "gnomon-ensemble/1" and len(state["members"]) == 2
    with pytest.raises(ValueError, match="not a gnomon ensemble"):
        Ensemble.from_state({"format": "other"})


RELOAD = """
import json, sys
from pymatgen.core import Structure
from gnomon.models.ensemble import Ensemble
from gnomon.models.screening import Screener
ens = Ensemble.load(sys.argv[1])
structures = [Structure.from_dict(d) for d in json.load(open(sys.argv[2]))]
print(json.dumps([[r.energy_per_atom, r.sigma] for r in Screener(ens).predict(structures)]))
"""


@pytest.mark.slow
def test_reloaded_in_another_process_predicts_identically(tiny_ensemble, tmp_path):
    path = tmp_path / "ensemble.pt"
    tiny_ensemble.save(path)
    structures = toy_structures(6, seed=22)
    (tmp_path / "s.json").write_text(json.dumps([s.as_dict() for s in structures]))
    here = [[r.energy_per_atom, r.sigma] for r in Screener(tiny_ensemble).predict(structures)]
    out = subprocess.run([sys.executable, "-c", RELOAD, str(path), str(tmp_path / "s.json")],
                         capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout) == here


def _toy_database(tmp_path, seed: int):
    """A database of 40 toy entries and the one-member, one-epoch training config for it."""
    repo = open_repository(f"sqlite:///{tmp_path / 'g.db'}")
    structures = toy_structures(40, seed=seed)
    repo.put([entry_from_structure(s, toy_energy(s) * len(s), SCHEME, source=f"t{i}")
              for i, s in enumerate(structures)])
    return repo, tiny_config(ensemble_size=1, max_epochs=1)


def test_train_scheme_fine_tunes_the_previous_version(tmp_path):
    repo, cfg = _toy_database(tmp_path, seed=23)
    first, _ = train_scheme(repo, tmp_path / "models", SCHEME, TINY_SPEC, cfg)
    second, _ = train_scheme(repo, tmp_path / "models", SCHEME, TINY_SPEC, cfg)
    third, _ = train_scheme(repo, tmp_path / "models", SCHEME, TINY_SPEC, cfg, retrain="scratch")
    assert first.parent is None and second.parent == first.id and third.parent is None
    assert first.n_train > 0 and first.training_data_hash == second.training_data_hash
    assert (tmp_path / "models" / first.id / "ensemble.pt").exists()
    with pytest.raises(ValueError, match="no entries"):
        train_scheme(repo, tmp_path / "models", "other-scheme", TINY_SPEC, cfg)
    repo.close()


def test_an_old_network_layout_is_refused_clearly_and_retraining_starts_afresh(tmp_path):
    repo, cfg = _toy_database(tmp_path, seed=29)
    first, _ = train_scheme(repo, tmp_path / "models", SCHEME, TINY_SPEC, cfg)
    # rewrite its weights as an older gnomon laid the network out (one renamed layer)
    path = tmp_path / "models" / first.id / "ensemble.pt"
    state = torch.load(path, weights_only=True)
    state["members"] = [{k.replace("center_in", "node_in"): v for k, v in m.items()}
                        for m in state["members"]]
    torch.save(state, path)
    with pytest.raises(ValueError, match="node_in.*older gnomon"):
        Ensemble.load(path)
    second, result = train_scheme(repo, tmp_path / "models", SCHEME, TINY_SPEC, cfg)
    assert second.parent is None
    assert second.config["retrain"] == "scratch"
    assert first.id in second.config["fine_tune_refused"]
    assert len(result.ensemble.members) == 1
    repo.close()
