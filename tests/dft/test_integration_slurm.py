"""A real single-node SLURM cluster (slurm-wlm + munge, started by infra/slurm/start.sh):
relaxations submitted, tracked and collected; scancel detected and retried; an orchestrator
killed mid-batch and restarted re-attaches without resubmitting or losing a result; the same
candidate submitted twice runs once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dft_helpers import rocksalt, si_diamond, wait_for
from gnomon_fake_engine import FakeEngine

from gnomon.dft.errors import DispatchError
from gnomon.dft.forcefield import CHGNetEngine
from gnomon.dft.service import BATCH_FILE, Relaxations
from gnomon.dft.settings import SlurmSettings
from gnomon.dft.slurm import SlurmDispatcher
from gnomon.storage import open_repository
from gnomon.storage.documents import CalcState, Calculation, Entry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


@pytest.fixture
def slurm(slurm_cluster, fake_env) -> SlurmDispatcher:
    return SlurmDispatcher(
        SlurmSettings(environment=fake_env, walltime="00:10:00", partition="debug")
    )


def test_chgnet_relaxations_through_slurm_run_once(slurm, sqlite_repo, tmp_path):
    svc = Relaxations(sqlite_repo, tmp_path / "runs", {"slurm": slurm}, pack=2)
    report = svc.submit([si_diamond(), rocksalt()], CHGNetEngine(), "slurm")
    assert len(report.new) == 2 and len(report.submitted_batches) == 1  # packed into one job
    (job_id,) = report.submitted_batches
    assert {c.batch_id for c in sqlite_repo.calculations()} == {job_id}
    assert {c.state for c in sqlite_repo.calculations()} == {CalcState.submitted}

    svc.wait(poll_s=1.0, timeout_s=300)
    calcs = sqlite_repo.calculations()
    assert {c.state for c in calcs} == {CalcState.done}, [c.failure_reason for c in calcs]
    for c in calcs:
        assert c.attempts == 1 and c.batch_id == job_id
        entry = sqlite_repo.get(Entry, c.entry_id)
        assert entry.scheme == "mlip-chgnet-0.3.0" and entry.calculation_id == c.id
        (line,) = (Path(c.workdir) / "attempts.log").read_text().splitlines()
        assert line.split()[1] == job_id  # ran once, inside that SLURM job

    again = svc.submit([si_diamond(), rocksalt()], CHGNetEngine(), "slurm")
    assert again.new == [] and again.submitted_batches == []
    assert all(c.attempts == 1 for c in sqlite_repo.calculations())


def test_scancel_is_detected_and_retried(slurm, sqlite_repo, tmp_path):
    svc = Relaxations(sqlite_repo, tmp_path / "runs", {"slurm": slurm}, max_retries=2)
    svc.submit([si_diamond()], FakeEngine(sleep_s=120, sleep_first_attempt_only=True), "slurm")
    (calc,) = sqlite_repo.calculations()
    wait_for(lambda: (Path(calc.workdir) / "started").exists(), timeout=120, what="job start")
    first = sqlite_repo.get(Calculation, calc.id).batch_id
    assert svc.track().running == [calc.id]
    assert sqlite_repo.get(Calculation, calc.id).state == CalcState.running
    subprocess.run(["scancel", first], check=True)

    svc.wait(poll_s=1.0, timeout_s=180)
    calc = sqlite_repo.get(Calculation, calc.id)
    assert calc.state == CalcState.done and calc.attempts == 2
    assert calc.batch_id != first
    assert len(calc.failures) == 1
    assert f"batch {first} (slurm) ended without a result" in calc.failures[0]
    assert "CANCELLED" in calc.failures[0]


def test_orchestrator_killed_mid_batch_reattaches(slurm_cluster, fake_env, tmp_path):
    db = f"sqlite:///{tmp_path / 'gnomon.db'}"
    runs = tmp_path / "runs"
    env = {**os.environ, **fake_env}
    proc = subprocess.Popen([sys.executable, str(HERE / "orchestrate.py"), db, str(runs), "3", "6"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    repo = open_repository(db)
    try:
        def mid_batch():
            calcs = repo.calculations()
            done = [c for c in calcs if c.state == CalcState.done]
            return (
                len(calcs) == 3
                and 1 <= len(done) < 3
                and all(c.batch_id for c in calcs if c.state != CalcState.queued)
            )

        wait_for(
            mid_batch, timeout=180, every=0.2, what="one result collected, others still running"
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {c.id: (c.state, c.batch_id) for c in repo.calculations()}
    assert any(state != CalcState.done for state, _ in before.values())

    sys.path.insert(0, str(HERE))
    from orchestrate import service

    svc = service(db, str(runs))
    svc.wait(poll_s=0.5, timeout_s=180)
    calcs = svc.repo.calculations()
    assert {c.state for c in calcs} == {CalcState.done}, [c.failure_reason for c in calcs]
    for c in calcs:
        assert c.attempts == 1 and not c.failures  # nothing resubmitted
        if before[c.id][1] is not None:
            assert c.batch_id == before[c.id][1]  # re-attached to the same job
        assert len((Path(c.workdir) / "attempts.log").read_text().splitlines()) == 1  # ran once
    assert len(list((runs / "batches").glob("*.sh"))) == 3  # three sbatch calls in all
    assert svc.repo.count("entries") == 3  # no result lost
    repo.close()


def test_batch_submitted_but_not_recorded_is_found_by_label(slurm, sqlite_repo, tmp_path):
    """The orchestrator died between sbatch and storing the job id."""
    svc = Relaxations(sqlite_repo, tmp_path / "runs", {"slurm": slurm})
    svc.submit([si_diamond()], FakeEngine(sleep_s=3), "slurm", dispatch=False)
    (calc,) = sqlite_repo.calculations()
    label = "gnomon-crashed-1"
    job_id = slurm.submit([Path(calc.workdir)], label, tmp_path / "runs" / "batches")
    (Path(calc.workdir) / BATCH_FILE).write_text(f'{{"label": "{label}", "dispatcher": "slurm"}}')
    sqlite_repo.set_calculation_state(calc.id, CalcState.submitted, attempts=1)

    report = svc.track()
    assert report.reattached == [calc.id] and report.submitted_batches == []
    svc.wait(poll_s=1.0, timeout_s=120)
    calc = sqlite_repo.get(Calculation, calc.id)
    assert calc.state == CalcState.done and calc.batch_id == job_id and calc.attempts == 1


def test_unreachable_slurm_is_reported_before_submitting(
    slurm_cluster, sqlite_repo, tmp_path, monkeypatch
):
    conf = tmp_path / "slurm.conf"
    text = (
        Path(slurm_cluster)
        .read_text()
        .replace("SlurmctldHost=localhost", "SlurmctldHost=localhost\nSlurmctldPort=6999")
    )
    conf.write_text(text)
    monkeypatch.setenv("SLURM_CONF", str(conf))
    svc = Relaxations(sqlite_repo, tmp_path / "runs", {"slurm": SlurmDispatcher(timeout_s=15)})
    with pytest.raises(DispatchError, match="SLURM unreachable"):
        svc.submit([si_diamond()], FakeEngine(), "slurm")
    assert sqlite_repo.count("calculations") == 0
    with pytest.raises(DispatchError, match="partition 'gpu' does not exist"):
        monkeypatch.setenv("SLURM_CONF", str(slurm_cluster))
        SlurmDispatcher(SlurmSettings(partition="gpu")).check()
