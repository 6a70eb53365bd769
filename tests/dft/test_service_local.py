"""The relaxation service over the local dispatcher, with the fake engine: submit once,
track, collect into entries and hulls, retry lost jobs, record failures, cancel, re-attach."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from dft_helpers import rocksalt, si_diamond, wait_for
from gnomon_fake_engine import FakeEngine

from gnomon.dft.errors import DispatchError, InputError
from gnomon.dft.local import LocalDispatcher
from gnomon.dft.service import BATCH_FILE, Relaxations
from gnomon.storage.documents import CalcState, Calculation, Entry, Phase


@pytest.fixture
def service(sqlite_repo, tmp_path, fake_env):
    def make(workers: int = 2, pack: int = 1, max_retries: int = 2) -> Relaxations:
        disp = LocalDispatcher(max_workers=workers, env=fake_env)
        return Relaxations(
            sqlite_repo, tmp_path / "runs", {"local": disp}, max_retries=max_retries, pack=pack
        )

    return make


def test_submit_track_collect_ingest(service, sqlite_repo):
    svc = service()
    engine = FakeEngine()
    report = svc.submit([si_diamond(), rocksalt()], engine, "local")
    assert len(report.new) == 2 and not report.existing
    total = svc.wait(poll_s=0.2, timeout_s=120)
    assert sorted(total.done) == sorted(report.new)

    calcs = sqlite_repo.calculations()
    assert {c.state for c in calcs} == {CalcState.done}
    for c in calcs:
        assert c.attempts == 1 and c.batch_id.startswith("local:")
        entry = sqlite_repo.get(Entry, c.entry_id)
        assert entry.scheme == "mlip-fake-1"
        assert entry.calculation_id == c.id and entry.candidate_id == c.candidate_id
        assert entry.inputs_hash == c.inputs_hash and entry.code_version == "fake 1.0"
        assert c.task_doc["settings_hash"] == engine.settings_hash
        assert sqlite_repo.get(Phase, entry.id) is not None
    nacl = next(e for e in sqlite_repo.entries() if e.reduced_formula == "NaCl")
    assert nacl.energy == pytest.approx(-2.4)


def test_same_candidate_twice_runs_once(service, sqlite_repo):
    svc = service()
    engine = FakeEngine()
    first = svc.submit([si_diamond()], engine, "local")
    svc.wait(poll_s=0.2, timeout_s=120)
    second = svc.submit([si_diamond()], engine, "local")
    assert second.new == [] and second.existing == first.new and second.submitted_batches == []
    # a different but equivalent cell of the same crystal is the same candidate
    third = svc.submit([si_diamond().make_supercell([1, 1, 2], in_place=False)], engine, "local")
    assert third.new == []
    calc = sqlite_repo.get(Calculation, first.new[0])
    assert calc.attempts == 1
    assert len((Path(calc.workdir) / "attempts.log").read_text().splitlines()) == 1
    # other engine settings are another calculation
    other = svc.submit([si_diamond()], FakeEngine(scale=0.97), "local")
    assert len(other.new) == 1
    svc.wait(poll_s=0.2, timeout_s=120)


def test_bad_input_submits_nothing(service, sqlite_repo):
    svc = service()
    bad = si_diamond()
    bad.replace_species({"Si": "Og"})
    with pytest.raises(InputError, match="Og"):
        svc.submit([si_diamond(), bad], FakeEngine(), "local")
    assert sqlite_repo.count("calculations") == 0 and sqlite_repo.count("candidates") == 0
    with pytest.raises(DispatchError, match="unknown dispatcher"):
        svc.submit([si_diamond()], FakeEngine(), "slurm")


def test_failure_in_the_code_is_recorded_not_retried(service, sqlite_repo):
    svc = service()
    svc.submit([si_diamond()], FakeEngine(fail=True), "local")
    total = svc.wait(poll_s=0.2, timeout_s=120)
    (calc,) = sqlite_repo.calculations()
    assert total.failed == [calc.id]
    assert calc.state == CalcState.failed and calc.attempts == 1
    assert calc.failure_reason == "fake SCF did not converge"
    assert sqlite_repo.count("entries") == 0


@pytest.mark.slow
def test_killed_worker_is_retried_with_failure_recorded(service, sqlite_repo):
    svc = service()
    svc.submit([si_diamond()], FakeEngine(sleep_s=30, sleep_first_attempt_only=True), "local")
    (calc,) = sqlite_repo.calculations()
    wait_for(lambda: (Path(calc.workdir) / "started").exists(), what="worker start")
    pid = int(sqlite_repo.get(Calculation, calc.id).batch_id.split(":")[1])
    os.killpg(pid, signal.SIGKILL)
    total = svc.wait(poll_s=0.2, timeout_s=120)
    calc = sqlite_repo.get(Calculation, calc.id)
    assert calc.state == CalcState.done and calc.attempts == 2
    assert total.retried == [calc.id]
    assert len(calc.failures) == 1 and "ended without a result" in calc.failures[0]
    assert "signal 9" in calc.failures[0]


@pytest.mark.slow
def test_gives_up_after_max_retries(service, sqlite_repo):
    svc = service(max_retries=1)
    svc.submit([si_diamond()], FakeEngine(sleep_s=30), "local")
    (calc,) = sqlite_repo.calculations()
    def current() -> Calculation:
        return sqlite_repo.get(Calculation, calc.id)

    for attempt in (1, 2):
        wait_for(lambda a=attempt: current().attempts == a and current().batch_id
                 and (Path(calc.workdir) / "started").exists(), what=f"attempt {attempt} running")
        os.killpg(int(current().batch_id.split(":")[1]), signal.SIGKILL)
        wait_for(
            lambda a=attempt: (
                svc.track() and (current().attempts > a or current().state == CalcState.failed)
            ),
            what=f"kill {attempt} noticed",
        )
    calc = wait_for(
        lambda: (c := sqlite_repo.get(Calculation, calc.id)).state == CalcState.failed and c,
        what="failed",
    )
    assert calc.attempts == 2 and len(calc.failures) == 2
    assert "gave up after 2 attempts" in calc.failure_reason


@pytest.mark.slow
def test_concurrency_limit_and_packing(service, sqlite_repo):
    structures = [si_diamond(a) for a in (5.5, 5.6, 5.7)]
    svc = service(workers=1)
    svc.submit(structures, FakeEngine(sleep_s=1.0), "local")
    active = {c.batch_id for c in sqlite_repo.calculations() if c.state != CalcState.queued}
    assert len(active) == 1
    assert sum(c.state == CalcState.queued for c in sqlite_repo.calculations()) == 2
    svc.wait(poll_s=0.2, timeout_s=120)
    assert {c.state for c in sqlite_repo.calculations()} == {CalcState.done}

    packed = service(workers=4, pack=2)
    packed.submit([rocksalt(a) for a in (5.5, 5.6, 5.7)], FakeEngine(), "local")
    batches = [
        c.batch_id
        for c in sqlite_repo.calculations()
        if c.engine == "fake" and c.candidate_id and c.state != CalcState.done
    ]
    assert len(set(batches)) == 2  # 3 calculations in packs of 2
    packed.wait(poll_s=0.2, timeout_s=120)


@pytest.mark.slow
def test_cancel_and_retry(service, sqlite_repo):
    svc = service(workers=1)
    svc.submit(
        [si_diamond(), rocksalt()], FakeEngine(sleep_s=30, sleep_first_attempt_only=True), "local"
    )
    calcs = sorted(sqlite_repo.calculations(), key=lambda c: c.state.value)
    running = next(c for c in calcs if c.state == CalcState.submitted)
    queued = next(c for c in calcs if c.state == CalcState.queued)
    wait_for(lambda: (Path(running.workdir) / "started").exists(), what="worker start")
    assert sorted(svc.cancel([running.id, queued.id])) == sorted([running.id, queued.id])
    assert {c.state for c in sqlite_repo.calculations()} == {CalcState.cancelled}
    svc.track()
    assert {c.state for c in sqlite_repo.calculations()} == {CalcState.cancelled}

    assert sorted(svc.retry([running.id, queued.id])) == sorted([running.id, queued.id])
    svc.wait(poll_s=0.2, timeout_s=120)
    assert {c.state for c in sqlite_repo.calculations()} == {CalcState.done}


def test_claimed_without_batch_id_goes_back_to_queue(service, sqlite_repo):
    """The orchestrator died between claiming a calculation and recording its batch."""
    svc = service()
    svc.submit([si_diamond()], FakeEngine(), "local", dispatch=False)
    (calc,) = sqlite_repo.calculations()
    sqlite_repo.set_calculation_state(calc.id, CalcState.submitted, attempts=1)
    (Path(calc.workdir) / BATCH_FILE).write_text(json.dumps({"label": "gnomon-lost-1"}))
    report = svc.track()
    assert report.submitted_batches  # queued again, then dispatched
    svc.wait(poll_s=0.2, timeout_s=120)
    calc = sqlite_repo.get(Calculation, calc.id)
    assert calc.state == CalcState.done and calc.attempts == 1
