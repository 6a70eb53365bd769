"""`gnomon relax` and `gnomon jobs status|cancel|retry` as a person uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.storage import open_repository
from gnomon.storage.documents import CalcState

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def write(tmp_path: Path, name: str, species: list[str], a: float = 5.6) -> Path:
    lattice = Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    coords = (
        [[0, 0, 0], [0.25, 0.25, 0.25]]
        if species[0] == species[-1]
        else [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    path = tmp_path / name
    Structure(lattice, species, coords).to(filename=str(path))
    return path


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'g.db'}"


def calculations(db: str):
    repo = open_repository(db)
    try:
        return repo.calculations()
    finally:
        repo.close()


def test_bad_input_is_refused_before_submitting(tmp_path, db, monkeypatch):
    si = write(tmp_path, "si.cif", ["Si", "Si"])
    nacl = write(tmp_path, "nacl.cif", ["Na", "Cl"])
    cm = write(tmp_path, "cm.cif", ["Cm", "Cm"])

    r = invoke("relax", str(si), "--engine", "vasp", "--db", db)
    assert r.exit_code == 1 and "nothing submitted: VASP not found" in r.output

    monkeypatch.setenv("GNOMON_QE__PW_COMMAND", "no-such-pw.x")
    r = invoke("relax", str(si), "--engine", "qe", "--db", db)
    assert r.exit_code == 1 and "pw.x not found" in r.output

    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    (pseudo / "Si.pbe-n-kjpaw_psl.1.0.0.UPF").write_text("<UPF/>")
    monkeypatch.setenv("GNOMON_QE__PW_COMMAND", "sh")
    monkeypatch.setenv("GNOMON_QE__PSEUDO_DIR", str(pseudo))
    r = invoke("relax", str(si), str(nacl), "--engine", "qe", "--db", db)
    assert r.exit_code == 1 and "no PBE pslibrary pseudopotential for Cl, Na" in " ".join(
        r.output.split()
    )

    r = invoke("relax", str(si), str(cm), "--engine", "mlip", "--db", db)
    assert r.exit_code == 1 and "does not support Cm" in r.output

    monkeypatch.setenv("PATH", str(tmp_path))
    r = invoke("relax", str(si), "--dispatch", "slurm", "--db", db)
    assert r.exit_code == 1 and "SLURM not found: sbatch is not on PATH" in r.output

    r = invoke("relax", str(si), "--engine", "castep", "--db", db)
    assert r.exit_code == 1 and "unknown engine" in r.output
    r = invoke("relax", str(tmp_path / "missing.cif"), "--db", db)
    assert r.exit_code == 1 and "no such file" in r.output

    assert calculations(db) == []


def test_jobs_commands_on_an_empty_database(db, tmp_path):
    r = invoke("jobs", "status", "--db", db)  # no database yet: said, and none created
    assert r.exit_code == 1 and "no gnomon database" in r.output
    assert not (tmp_path / "g.db").exists()
    open_repository(db).close()
    r = invoke("jobs", "status", "--db", db)
    assert r.exit_code == 0 and "0 calculation(s)" in r.output
    r = invoke("jobs", "cancel", "--db", db)
    assert r.exit_code == 1 and "give calculation ids or --all" in r.output
    r = invoke("jobs", "retry", "nothere", "--db", db)
    assert r.exit_code == 1 and "no calculation 'nothere'" in r.output


@pytest.mark.slow
def test_relax_wait_status_retry(tmp_path, db):
    si = write(tmp_path, "si.cif", ["Si", "Si"])
    r = invoke("relax", str(si), "--engine", "mlip", "--wait", "--poll", "0.5", "--db", db)
    assert r.exit_code == 0, r.output
    assert "1 relaxation(s) queued (mlip-chgnet-0.3.0, local)" in r.output
    (calc,) = calculations(db)
    assert calc.state == CalcState.done and calc.entry_id
    short = f"{calc.candidate_id[:8]}:{calc.settings_hash[:6]}"
    assert short in r.output and "done" in r.output

    r = invoke("relax", str(si), "--engine", "mlip", "--db", db)
    assert "0 relaxation(s) queued" in r.output and "1 already known" in r.output

    r = invoke("jobs", "status", "--db", db)
    assert r.exit_code == 0 and short in r.output and "done: 1" in r.output

    r = invoke("jobs", "cancel", short, "--db", db)
    assert "cancelled 0 of 1" in r.output  # a finished calculation stays finished

    # a failed calculation is queued again and runs to the end
    repo = open_repository(db)
    repo.set_calculation_state(calc.id, CalcState.failed, failure_reason="node lost")
    repo.close()
    (Path(calc.workdir) / "result.json").unlink()
    r = invoke("jobs", "status", "--state", "failed", "--db", db)
    assert "node" in r.output and "failed: 1" in r.output
    r = invoke("jobs", "retry", short, "--db", db)
    assert r.exit_code == 0 and "queued again 1 of 1" in r.output
    r = invoke("jobs", "status", "--wait", "--poll", "0.5", "--db", db)
    assert r.exit_code == 0 and "done: 1" in r.output
