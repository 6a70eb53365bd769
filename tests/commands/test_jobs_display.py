"""`gnomon jobs status` names what each job relaxes from the moment it is submitted, and a
retried job no longer shows the reason its last try failed (its history keeps it)."""

from __future__ import annotations

import re

import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.dft.local import LocalDispatcher
from gnomon.dft.service import Relaxations
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.storage import open_repository
from gnomon.storage.documents import CalcState, Calculation

runner = CliRunner()


def status(db: str) -> str:
    result = runner.invoke(app, ["jobs", "status", "--no-refresh", "--db", db],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def row_of(output: str, calc_id: str) -> str:
    short = calc_id.split(":")[0][:8]
    (row,) = [line for line in output.splitlines() if short in line]
    return row


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def submitted(db: str, tmp_path, state: CalcState, **fields) -> Calculation:
    """A calculation of a LiMnO2 candidate as the service records it, not yet relaxed."""
    structure = Structure(
        Lattice.orthorhombic(2.8, 5.7, 4.6), ["Li", "Li", "Mn", "Mn", "O", "O", "O", "O"],
        [[0, 0.1, 0.6], [0.5, 0.6, 0.9], [0, 0.4, 0.1], [0.5, 0.9, 0.4], [0, 0.14, 0.14],
         [0.5, 0.64, 0.36], [0, 0.36, 0.64], [0.5, 0.86, 0.86]],
    )
    candidate = candidate_from_structure(structure, "test")
    workdir = tmp_path / "runs" / candidate.id
    workdir.mkdir(parents=True)
    calc = Calculation(
        id=Calculation.key(candidate.id, "abcdef123456"), candidate_id=candidate.id,
        engine="mlip", scheme="mlip-chgnet-0.3.0", settings_hash="abcdef123456",
        state=state, dispatcher="local", workdir=str(workdir), **fields,
    )
    repo = open_repository(db)
    repo.add_candidates([candidate])
    repo.put([calc])
    repo.close()
    return calc


@pytest.mark.parametrize("state", [CalcState.queued, CalcState.submitted, CalcState.running])
def test_a_job_shows_its_formula_before_it_is_done(db, tmp_path, state):
    calc = submitted(db, tmp_path, state, attempts=1, batch_id="local:1:x")
    assert re.search(r"│ LiMnO2\s+│", row_of(status(db), calc.id))


def test_retry_clears_the_last_failure_reason_and_keeps_the_history(db, tmp_path):
    calc = submitted(db, tmp_path, CalcState.failed, attempts=3,
                     failure_reason="node lost (gave up after 3 attempts)",
                     failures=["node lost", "node lost", "node lost"])
    assert "node lost" in row_of(status(db), calc.id)
    repo = open_repository(db)
    service = Relaxations(repo, tmp_path / "runs", {"local": LocalDispatcher(max_workers=1)})
    assert service.retry([calc.id], dispatch=False) == [calc.id]
    again = repo.get(Calculation, calc.id)
    repo.close()
    assert again.state is CalcState.queued and again.attempts == 0
    assert again.failure_reason is None
    assert again.failures == ["node lost", "node lost", "node lost"]
    row = row_of(status(db), calc.id)
    assert "node lost" not in row and "queued" in row and "LiMnO2" in row
