"""SevenNet-0 fine-tuned through sevenn's own path, as a product: ``gnomon mlip finetune``
writes a checkpoint and its card, and the checkpoint is the SevenNet engine's model, in an
energy scheme named by its weights (not by where the file lies). A missing or unreadable
checkpoint is one line at `campaign validate`; a stopped fine-tune restarts cleanly."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from dft_helpers import rocksalt, si_diamond
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.config import Settings
from gnomon.dft import sevennet_finetune as ft
from gnomon.dft.engine import engine_from_spec, make_engine
from gnomon.dft.errors import InputError
from gnomon.dft.forcefield import SevenNetEngine
from gnomon.dft.potentials import installed_version, sevennet_elements
from gnomon.pipeline.thermo.entries import entry_from_structure, make_entry
from gnomon.pipeline.thermo.schemes import SchemeError, sevennet_scheme

pytest.importorskip("sevenn", reason="sevenn is not installed: the SevenNet fine-tune is skipped")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bcc(el: str, a: float) -> Structure:
    return Structure(Lattice.cubic(a), [el, el], [[0, 0, 0], [0.5, 0.5, 0.5]])


#: (id, chemsys, structure, total energy): three elements and four rock-salt binaries, two
#: cells each; small cells, made-up energies (a fine-tune needs labels, not physics)
COMPOUNDS = [("Li", "F", 4.03, -4.8), ("Na", "Cl", 5.64, -3.4), ("Li", "Cl", 5.13, -3.6),
             ("Na", "F", 4.63, -4.3), ("K", "Cl", 6.29, -3.5)]


def _rows() -> list[tuple[str, str, Structure, float]]:
    rows = [("li", "Li", _bcc("Li", 3.44), -3.8), ("na", "Na", _bcc("Na", 4.23), -2.6),
            ("si", "Si", si_diamond(5.47), -10.8)]
    for a, b, lattice, e in COMPOUNDS:
        for k, strain in enumerate((1.0, 1.03)):
            rows.append((f"{a}{b}-{k}", f"{b}-{a}", rocksalt(lattice * strain, a, b),
                         2 * e + 0.05 * k))
    return rows


def _world(root: Path) -> Path:
    """A world folder of those rows, K-Cl held out."""
    root.mkdir(parents=True)
    with gzip.open(root / "world.jsonl.gz", "wt") as fh:
        for rid, chemsys, st, e in _rows():
            fh.write(json.dumps({"id": rid, "chemsys": chemsys, "relaxed": st.as_dict(),
                                 "energy": e}) + "\n")
    (root / "heldout.json").write_text(json.dumps({"systems": ["K-Cl"]}))
    return root


def _ids(path: Path) -> set[str]:
    from ase.io import read

    return {atoms.info["id"] for atoms in read(path, index=":")}


# -- the scheme of a checkpoint file ---------------------------------------------------------------


def test_a_checkpoint_file_is_a_scheme_of_its_own_named_by_its_weights(tmp_path):
    one = tmp_path / "a" / "model.pth"
    one.parent.mkdir()
    one.write_bytes(b"weights one")
    copy = tmp_path / "elsewhere" / "renamed.pth"
    copy.parent.mkdir()
    shutil.copyfile(one, copy)
    other = tmp_path / "b.pth"
    other.write_bytes(b"weights two")

    assert sevennet_scheme(str(one)) == f"mlip-sevennet-ft-{_sha(one)[:12]}"
    assert sevennet_scheme(str(copy)) == sevennet_scheme(str(one))
    assert sevennet_scheme(str(other)) != sevennet_scheme(str(one))
    # sevenn's own names keep their schemes
    assert sevennet_scheme("7net-0") == "mlip-sevennet-0"
    assert sevennet_scheme("SevenNet-l3i5") == "mlip-sevennet-l3i5"
    with pytest.raises(SchemeError) as err:
        sevennet_scheme(str(tmp_path / "missing.pth"))
    assert str(err.value) == f"SevenNet checkpoint {tmp_path / 'missing.pth'}: no such file"


def test_the_default_model_keeps_the_settings_hash_of_stored_calculations():
    # the hashes stored calculations of SevenNet-0 carry (gnomon before checkpoint files)
    assert SevenNetEngine().settings_hash == "b966493601dcd9c5"
    assert SevenNetEngine(fmax=0.1, steps=40).settings_hash == "2ae345354c92f2ca"
    assert SevenNetEngine(model="7net-l3i5").settings_hash == "ef3561b5741b2deb"
    assert SevenNetEngine().settings_payload()["model"] == "7net-0"


def test_a_missing_checkpoint_is_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "runs" / "missing.pth"
    with pytest.raises(ValueError) as err:
        make_engine("sevennet", Settings(), model=str(missing))
    assert str(err.value) == f"SevenNet checkpoint {missing}: no such file"
    with pytest.raises(ValueError, match="not a file"):
        SevenNetEngine(model=str(tmp_path))


def test_campaign_validate_names_a_missing_or_unreadable_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("GNOMON_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("GNOMON_DB", raising=False)
    monkeypatch.delenv("GNOMON_CONFIG", raising=False)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    for model, problem in [
        (tmp_path / "missing.pth", f"mlip_engine.options: SevenNet checkpoint "
                                   f"{tmp_path / 'missing.pth'}: no such file"),
        (garbage, f"mlip_engine: SevenNet checkpoint {garbage}: not a SevenNet checkpoint"),
    ]:
        config = tmp_path / "c.yaml"
        config.write_text(
            "name: t\nelements: [Li, F]\nstages: [screen, mlip, dft]\nengine: mlip\n"
            f"mlip_engine: {{name: sevennet, options: {{model: '{model}'}}}}\n")
        result = CliRunner().invoke(app, ["campaign", "validate", str(config)])
        assert result.exit_code == 1, result.output
        assert problem in _one_line(result.output)
        assert "Traceback" not in result.output


# -- a fine-tune killed midway, another request, a database's entries (sevenn stood in for) ------


class FakeSevenn:
    """``sevenn train`` as the fine-tune calls it: an lc.csv and a best checkpoint in the run
    folder; ``kill`` stops the first call midway (a partial checkpoint, no learning curve)."""

    def __init__(self, kill: bool = False):
        self.kill = kill
        self.calls: list[Path] = []

    def __call__(self, cmd, cwd, env, stdout, stderr):
        run = Path(cwd)
        self.calls.append(run)
        assert cmd[1:4] == ["-m", "sevenn.main.sevenn", "train"] and (run / "input.yaml").is_file()
        if self.kill:
            self.kill = False
            (run / "checkpoint_0.pth").write_bytes(b"partial")
            raise KeyboardInterrupt
        (run / "lc.csv").write_text("epoch,lr,validset_TotalLoss\n1,0.001,0.5\n")
        (run / "checkpoint_best.pth").write_bytes(f"weights {len(self.calls)}".encode())

        class Done:
            returncode = 0

        return Done()


def _labelled() -> list[ft.Labelled]:
    return [ft.Labelled(rid, "-".join(sorted(c.split("-"))), st, e) for rid, c, st, e in _rows()]


def test_a_killed_fine_tune_restarts_cleanly_and_a_finished_one_is_not_rerun(tmp_path,
                                                                           monkeypatch):
    fake = FakeSevenn(kill=True)
    monkeypatch.setattr(ft.subprocess, "run", fake)
    tuner = ft.SevenNetFineTuner(structures=20, epochs=1, batch=2)
    out = tmp_path / "ft"
    with pytest.raises(KeyboardInterrupt):
        tuner.run(_labelled(), out)
    assert not (out / ft.RUN_DIR / ft.DONE_FILE).exists() and not (out / ft.CARD_FILE).exists()

    card = tuner.run(_labelled(), out)
    assert len(fake.calls) == 2
    assert not (out / ft.RUN_DIR / "checkpoint_0.pth").exists()  # the stopped run was removed
    model = out / ft.MODEL_FILE
    assert card["sha256"] == _sha(model) and card["scheme"] == sevennet_scheme(str(model))
    assert json.loads((out / ft.CARD_FILE).read_text()) == card
    # train and validation never share a system; validation systems are never trained on
    run = out / ft.RUN_DIR
    train, valid = _ids(run / "train.extxyz"), _ids(run / "valid.extxyz")
    assert train and valid and not train & valid
    assert card["data"]["train"] == len(train) and card["data"]["valid"] == len(valid)
    held = set(card["data"]["validation_systems"])
    assert held and all(r.chemsys not in held for r in _labelled() if r.id in train)

    again = tuner.run(_labelled(), out)
    assert again == card and len(fake.calls) == 2  # done: nothing ran
    with pytest.raises(ft.FineTuneError, match="holds a finished fine-tune"):
        ft.SevenNetFineTuner(structures=20, epochs=2, batch=2).run(_labelled(), out)


def test_finetune_on_a_database_scheme_never_uses_excluded_systems(tmp_path, monkeypatch,
                                                                  sqlite_repo):
    fake = FakeSevenn()
    monkeypatch.setattr(ft.subprocess, "run", fake)
    scheme = "mlip-chgnet-0.3.0"
    entries = [entry_from_structure(st, e, scheme, source=rid) for rid, _, st, e in _rows()]
    entries.append(make_entry("LiF", -9.0, scheme, record="energy only", source="no structure"))
    sqlite_repo.put(entries)
    out = tmp_path / "ft"
    result = CliRunner().invoke(app, [
        "mlip", "finetune", "--db", sqlite_repo.url, "--scheme", scheme, "--exclude", "Cl-Li",
        "--exclude", "K-Cl,Na-F", "--epochs", "1", "--batch", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = _one_line(result.output)
    card = json.loads((out / ft.CARD_FILE).read_text())
    assert f"energy scheme: {card['scheme']}" in text
    assert f'mlip_engine: {{name: sevennet, options: {{model: "{(out / ft.MODEL_FILE).resolve()}"' \
        in text
    used = _ids(out / ft.RUN_DIR / "train.extxyz") | _ids(out / ft.RUN_DIR / "valid.extxyz")
    by_id = {e.id: e for e in entries}
    assert {by_id[i].chemsys for i in used} == {"Li", "Na", "Si", "F-Li", "Cl-Na"}
    assert card["source"]["scheme"] == scheme and card["source"]["without_structure"] == 1
    assert card["source"]["excluded"] == ["Cl-Li", "K-Cl", "Na-F"]
    assert card["source"]["excluded_structures"] == 6
    assert card["command"].startswith("gnomon mlip finetune --exclude=Cl-Li")

    result = CliRunner().invoke(app, ["mlip", "finetune", "--db", sqlite_repo.url,
                                      "--scheme", "mlip-chgnet-0.3", "--out", str(out)])
    assert result.exit_code == 1 and "unknown energy scheme" in result.output


# -- frames of relaxations, labelled by single points, beside the minima ------------------------


def _framed_row(rid: str, chemsys: str, st: Structure, e: float) -> dict:
    """A world row whose relaxation kept three frames: the input (strained 6 %, its first
    atom off its site), one on the way, and the last (the relaxed structure itself)."""
    frames = []
    for step, strain in ((0, 1.06), (4, 1.02), (17, 1.0)):
        cell = st.copy()
        cell.scale_lattice(st.volume * strain**3)
        if step < 17:
            cell.translate_sites([0], [0.02 * strain, 0.01, 0.0])
        frames.append({"step": step, "energy_per_atom": e / len(st),
                       "structure": cell.as_dict()})
    return {"id": rid, "chemsys": chemsys, "relaxed": st.as_dict(), "energy": e,
            "frames": frames}


def _lj():
    from ase.calculators.lj import LennardJones

    return LennardJones(sigma=2.0, epsilon=1.0, rc=6.0)


def test_a_rows_frames_but_its_last_are_geometries_to_label_and_forces_come_from_the_calculator():
    from pymatgen.io.ase import AseAtomsAdaptor

    row = _framed_row("LiF-0", "Li-F", rocksalt(4.03, "Li", "F"), -9.6)
    geometries = ft.Geometry.of_world_row(row)
    assert [g.id for g in geometries] == ["LiF-0:frame0", "LiF-0:frame4"]
    assert {g.chemsys for g in geometries} == {"F-Li"}
    # a cell with two atoms 0.3 Å apart: forces far beyond any relaxation's, left out
    crushed = ft.Geometry("x:frame0", "F-Li", Structure(Lattice.cubic(6.0), ["Li", "F"],
                                                        [[0, 0, 0], [0.05, 0, 0]]).as_dict())
    labelled, dropped = ft.label_frames([*geometries, crushed], _lj())
    assert dropped == 1 and [r.id for r in labelled] == ["LiF-0:frame0", "LiF-0:frame4"]
    for g, r in zip(geometries, labelled, strict=True):
        atoms = AseAtomsAdaptor.get_atoms(Structure.from_dict(g.structure))
        atoms.calc = _lj()
        assert r.energy == pytest.approx(atoms.get_potential_energy())
        assert r.forces.shape == (len(Structure.from_dict(g.structure)), 3)
        assert r.forces == pytest.approx(atoms.get_forces())
        assert np.abs(r.forces).max() > 1e-3  # a displaced atom is not at rest


def test_frames_of_training_systems_are_trained_on_with_their_forces_never_of_validation_ones(
        tmp_path, monkeypatch):
    from ase.io import read

    fake = FakeSevenn()
    monkeypatch.setattr(ft.subprocess, "run", fake)
    records = [_framed_row(rid, "-".join(sorted(c.split("-"))), st, e)
               for rid, c, st, e in _rows()]
    rows = [ft.Labelled.from_world_row(r) for r in records]
    geometries = [g for r in records for g in ft.Geometry.of_world_row(r)]
    labels = []

    def calculator():
        labels.append(1)
        return _lj()

    tuner = ft.SevenNetFineTuner(structures=20, epochs=1, batch=2, frames=5)
    out = tmp_path / "ft"
    card = tuner.run(rows, out, geometries=geometries, calculator=calculator)
    assert labels == [1]
    frames = [a for a in read(out / ft.RUN_DIR / "train.extxyz", index=":")
              if ":frame" in a.info["id"]]
    assert card["data"]["frames"] == len(frames) == 5 and card["data"]["frames_left_out"] == 0
    held = set(card["data"]["validation_systems"])
    chemsys = {r.id: r.chemsys for r in rows}
    assert all(chemsys[a.info["id"].split(":")[0]] not in held for a in frames)
    assert all(np.abs(a.get_forces()).max() > 1e-3 for a in frames)
    # spread over relaxations: five frames of five different relaxations
    assert len({a.info["id"].split(":")[0] for a in frames}) == 5
    minima = [a for a in read(out / ft.RUN_DIR / "train.extxyz", index=":")
              if ":frame" not in a.info["id"]]
    assert minima and all(not a.get_forces().any() for a in minima)
    # the same request again: done, nothing labelled or trained; more frames: another request
    assert tuner.run(rows, out, geometries=geometries, calculator=calculator) == card
    assert labels == [1] and len(fake.calls) == 1
    with pytest.raises(ft.FineTuneError, match="holds a finished fine-tune"):
        ft.SevenNetFineTuner(structures=20, epochs=1, batch=2, frames=6).run(
            rows, out, geometries=geometries, calculator=calculator)
    with pytest.raises(ft.FineTuneError, match="need the scheme's calculator"):
        tuner.run(rows, tmp_path / "other", geometries=geometries)


def test_finetune_on_a_worlds_frames_labels_them_with_the_oracle(tmp_path, monkeypatch):
    """``--world --frames``: frames of training systems, labelled by the world's oracle
    (CHGNet single points: its energies and forces), beside the minima; a world that names no
    oracle scheme, or another, is one line."""
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    from gnomon.world.oracle import SCHEME, oracle_engine

    fake = FakeSevenn()
    monkeypatch.setattr(ft.subprocess, "run", fake)
    world = tmp_path / "world"
    world.mkdir()
    with gzip.open(world / "world.jsonl.gz", "wt") as fh:
        for rid, chemsys, st, e in _rows():
            fh.write(json.dumps(_framed_row(rid, chemsys, st, e)) + "\n")
    (world / "heldout.json").write_text(json.dumps({"systems": ["K-Cl"]}))
    args = ["mlip", "finetune", "--world", str(world), "--frames", "3", "--epochs", "1",
            "--out", str(tmp_path / "ft")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "records no oracle scheme" in _one_line(result.output)
    (world / "manifest.json").write_text(json.dumps({"oracle": {"scheme": "qe-pbe-sssp"}}))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "labelled in qe-pbe-sssp" in _one_line(result.output)
    (world / "manifest.json").write_text(json.dumps({"oracle": {"scheme": SCHEME}}))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "ft" / ft.CARD_FILE).read_text())
    # two frames of each of the 11 rows outside the held-out K-Cl
    assert card["data"]["frames"] == 3 and card["source"]["frames_available"] == 22
    assert "--frames=3" in card["command"]
    frames = [a for a in read(tmp_path / "ft" / ft.RUN_DIR / "train.extxyz", index=":")
              if ":frame" in a.info["id"]]
    assert len(frames) == 3 and not any(a.info["id"].startswith("KCl") for a in frames)
    oracle = AseAtomsAdaptor.get_atoms(AseAtomsAdaptor.get_structure(frames[0]))
    oracle.calc = oracle_engine().calculator()
    assert frames[0].get_potential_energy() == pytest.approx(oracle.get_potential_energy(),
                                                             abs=1e-4)
    assert frames[0].get_forces() == pytest.approx(oracle.get_forces(), abs=1e-4)


def test_frames_are_asked_of_a_world_only(tmp_path, sqlite_repo):
    result = CliRunner().invoke(app, ["mlip", "finetune", "--db", sqlite_repo.url, "--scheme",
                                      "mlip-chgnet-0.3.0", "--frames", "10",
                                      "--out", str(tmp_path / "ft")])
    assert result.exit_code == 1
    assert "--frames needs --world" in _one_line(result.output)
    assert "Traceback" not in result.output and not (tmp_path / "ft").exists()


# -- a real fine-tune through sevenn ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> tuple[Path, dict, str]:
    """``gnomon mlip finetune`` on a tiny world for one epoch: (out folder, card, output)."""
    root = tmp_path_factory.mktemp("sevennet-ft")
    world = _world(root / "world")
    out = root / "ft"
    args = ["mlip", "finetune", "--world", str(world), "--exclude", "Cl-Li", "--epochs", "1",
            "--batch", "2", "--threads", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, json.loads((out / ft.CARD_FILE).read_text()), _one_line(result.output)


@pytest.mark.slow
def test_finetune_writes_the_checkpoint_sevenn_chose_and_its_card(tuned):
    out, card, text = tuned
    model = out / ft.MODEL_FILE
    assert model.is_file() and card["checkpoint"] == ft.MODEL_FILE
    assert card["sha256"] == _sha(model) == _sha(out / ft.RUN_DIR / "checkpoint_best.pth")
    assert card["scheme"] == f"mlip-sevennet-ft-{card['sha256'][:12]}"
    assert f"energy scheme: {card['scheme']}" in text and card["campaign_config"] in text
    assert card["epochs"] == 1 and card["best_epoch"] == 1 and card["lr"] == 0.001
    assert len(card["learning_curve"]) == 1 and card["cpu_s"] > 0
    assert card["sevenn_version"] == installed_version("sevenn")
    assert card["elements"] == ["Cl", "F", "Li", "Na", "Si"]
    # the world's held-out system and the excluded one are never used, not even to validate
    used = _ids(out / ft.RUN_DIR / "train.extxyz") | _ids(out / ft.RUN_DIR / "valid.extxyz")
    assert used and not {i for i in used if i.startswith(("KCl", "LiCl"))}
    assert card["source"]["heldout_systems"] == ["Cl-K"] and card["source"]["heldout_rows"] == 2
    assert card["data"]["available"] == 9 == len(used)
    assert card["source"]["excluded_structures"] == 2
    # rerun: the finished fine-tune is returned, nothing is trained again
    before = model.stat().st_mtime_ns
    result = CliRunner().invoke(app, ["mlip", "finetune", "--world", card["source"]["world"],
                                      "--exclude", "Cl-Li", "--epochs", "1", "--batch", "2",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert model.stat().st_mtime_ns == before


@pytest.mark.slow
def test_the_checkpoint_is_the_engines_model_wherever_it_lies(tuned, tmp_path, monkeypatch):
    out, card, _ = tuned
    model = out / ft.MODEL_FILE
    engine = make_engine("sevennet", Settings(), model=str(model), fmax=0.1)
    assert engine.scheme == card["scheme"] != SevenNetEngine().scheme
    assert engine.model == str(model.resolve())
    again = engine_from_spec(engine.spec())
    assert again == engine and again.settings_hash == engine.settings_hash
    # a byte-identical copy elsewhere, named relative to the working folder: the same scheme
    # and the same calculation; the default model another
    (tmp_path / "copies").mkdir()
    shutil.copyfile(model, tmp_path / "copies" / "mine.pth")
    monkeypatch.chdir(tmp_path)
    copy = SevenNetEngine(model="copies/mine.pth", fmax=0.1)
    assert copy.model == str(tmp_path / "copies" / "mine.pth")
    assert copy.scheme == engine.scheme and copy.settings_hash == engine.settings_hash
    assert engine.settings_hash != SevenNetEngine(fmax=0.1).settings_hash
    # elements come from the checkpoint's type map (SevenNet-0's, kept by the fine-tune)
    assert {"Li", "Na", "Si", "F", "Cl", "O"} <= sevennet_elements(str(model))
    engine.check([rocksalt(4.0, "Li", "F")])
    cm = Structure(Lattice.cubic(3.5), ["Cm"], [[0, 0, 0]])
    with pytest.raises(InputError, match="does not support Cm"):
        engine.check([cm])


@pytest.mark.slow
def test_a_relaxation_and_a_single_point_with_the_fine_tune_are_finite(tuned, tmp_path):
    import torch
    from pymatgen.io.ase import AseAtomsAdaptor

    out, card, _ = tuned
    engine = SevenNetEngine(model=str(out / ft.MODEL_FILE), fmax=0.1, steps=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        atoms = AseAtomsAdaptor.get_atoms(rocksalt(4.1, "Li", "F"))
        atoms.calc = engine.calculator()
        assert math.isfinite(atoms.get_potential_energy())
        doc = engine.relax(rocksalt(4.2, "Na", "F"), tmp_path / "relax")
    finally:
        torch.set_num_threads(threads)
    assert math.isfinite(doc.energy) and doc.scheme == card["scheme"]
    assert doc.settings_hash == engine.settings_hash and doc.engine == "sevennet"
