"""`gnomon model train|list|show|predict|evaluate` as a person uses them."""

from __future__ import annotations

import json
import shutil

import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.thermo.entries import entry_from_structure
from gnomon.storage import Prediction, open_repository
from tests.models.conftest import cscl, toy_energy, toy_structures

runner = CliRunner()
SCHEME = "mlip-toy-1"
TINY = ["--ensemble", "2", "--hidden", "8", "--layers", "1", "--cutoff", "4.0", "--epochs", "2",
        "--batch-size", "16", "--val-fraction", "0.3"]


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def make_db(url: str) -> str:
    repo = open_repository(url)
    structures = toy_structures(40, seed=31)
    structures += [Structure(Lattice.cubic(3.0), [el], [[0, 0, 0]]) for el in ("Li", "Na", "Cl")]
    repo.put([entry_from_structure(s, toy_energy(s) * len(s), SCHEME, source=f"t{i}")
              for i, s in enumerate(structures)])
    from gnomon.pipeline.thermo.hull import HullEngine

    HullEngine(repo).rebuild(SCHEME)
    repo.close()
    return url


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A database with entries and one trained model, built once and copied per test."""
    folder = tmp_path_factory.mktemp("model-cli")
    db = make_db(f"sqlite:///{folder / 'cli.db'}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GNOMON_HOME", str(folder / "home"))
        result = invoke("model", "train", *TINY, "--db", db)
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def db(tmp_path):
    return make_db(f"sqlite:///{tmp_path / 'cli.db'}")


@pytest.fixture
def trained(template, tmp_path):
    shutil.copy(template / "cli.db", tmp_path / "trained.db")
    return f"sqlite:///{tmp_path / 'trained.db'}"


def test_train_list_show(trained):
    listing = invoke("model", "list", "--db", trained)
    assert listing.exit_code == 0 and "gnn-mlip-toy-1-v1" in listing.output
    shown = invoke("model", "show", "gnn-mlip-toy-1-v1", "--db", trained)
    assert shown.exit_code == 0
    assert "mlip-toy-1" in shown.output and "±1σ" in shown.output and "σ scale" in shown.output
    # retraining fine-tunes the previous version by default
    again = invoke("model", "train", *TINY, "--db", trained)
    assert again.exit_code == 0 and "gnn-mlip-toy-1-v2" in again.output
    assert "parent gnn-mlip-toy-1-v1" in again.output


def test_train_without_entries_fails_cleanly(tmp_path):
    result = runner.invoke(app, ["model", "train", "--db", f"sqlite:///{tmp_path / 'empty.db'}"])
    # no database at all: one line naming it, and none created on the way
    assert result.exit_code == 1 and "no gnomon database" in result.output
    assert "empty.db" in result.output and not (tmp_path / "empty.db").exists()


def test_show_unknown_version_fails(trained):
    result = runner.invoke(app, ["model", "show", "nope", "--db", trained])
    assert result.exit_code == 1 and "no model version 'nope'" in result.output


def test_predict_structure_files(trained, tmp_path):
    s = cscl("Li", "Cl", 3.1)
    s.to(filename=str(tmp_path / "LiCl.cif"))
    s.to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    (tmp_path / "many.json").write_text(json.dumps([s.as_dict(), cscl("Na", "Cl", 3.3).as_dict()]))
    result = invoke("model", "predict", str(tmp_path / "LiCl.cif"), str(tmp_path / "POSCAR"),
                    str(tmp_path / "many.json"), "--json", "--db", trained)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["model"] == "gnn-mlip-toy-1-v1"
    rows = out["predictions"]
    assert [r["structure"] for r in rows] == ["LiCl.cif", "POSCAR", "many.json[0]",
                                             "many.json[1]"]
    assert [r["file"] for r in rows] == [str(tmp_path / n) for n in
                                         ("LiCl.cif", "POSCAR", "many.json", "many.json")]
    assert rows[0]["energy_per_atom"] == pytest.approx(rows[1]["energy_per_atom"], abs=1e-5)
    assert rows[0]["energy_per_atom"] == pytest.approx(rows[2]["energy_per_atom"], abs=1e-5)
    assert all(r["sigma"] >= 0 and r["e_above_hull"] is not None for r in rows)
    table = invoke("model", "predict", str(tmp_path / "LiCl.cif"), "--tta", "--db", trained)
    assert table.exit_code == 0 and "LiCl" in table.output and "TTA" in table.output


def test_predict_reports_rejected_structures(trained, tmp_path):
    Structure(Lattice.cubic(15), ["Na"], [[0, 0, 0]]).to(filename=str(tmp_path / "sparse.cif"))
    result = runner.invoke(app, ["model", "predict", str(tmp_path / "sparse.cif"), "--db", trained])
    assert result.exit_code == 2 and "rejected" in result.output and "no neighbour" in result.output


def test_predict_without_a_model_fails(db, tmp_path):
    cscl("Li", "Cl", 3.1).to(filename=str(tmp_path / "LiCl.cif"))
    result = runner.invoke(app, ["model", "predict", str(tmp_path / "LiCl.cif"), "--db", db])
    assert result.exit_code == 1 and "gnomon model train" in result.output


def test_predict_stored_candidates_writes_predictions(trained):
    repo = open_repository(trained)
    candidates = [candidate_from_structure(s, "test", campaign="c1", round=0)
                  for s in toy_structures(5, seed=32)]
    repo.add_candidates(candidates)
    repo.close()
    result = invoke("model", "predict", "--candidates", "--campaign", "c1", "--db", trained)
    assert result.exit_code == 0 and "5 predictions written" in result.output
    repo = open_repository(trained)
    preds = repo.predictions_for([c.id for c in candidates], "gnn-mlip-toy-1-v1")
    assert len(preds) == 5 and all(isinstance(p, Prediction) for p in preds.values())
    repo.close()
    # a second run finds nothing left to do
    again = invoke("model", "predict", "--candidates", "--campaign", "c1", "--db", trained)
    assert "0 predictions written" in again.output


def test_evaluate_on_held_out_entries(trained):
    result = invoke("model", "evaluate", "--model", "gnn-mlip-toy-1-v1", "--db", trained)
    assert result.exit_code == 0, result.output
    assert "held out" in result.output and "MAE" in result.output
    everything = invoke("model", "evaluate", "--model", "gnn-mlip-toy-1-v1", "--include-training",
                        "--db", trained)
    assert everything.exit_code == 0 and "incl. training" in everything.output
