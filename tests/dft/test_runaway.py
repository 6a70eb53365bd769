"""Runaway relaxations: a CHGNet relaxation of an absurdly dense cell grows its neighbour lists
past the per-relaxation memory limit, one that never converges past the wall-time limit; each
is stopped, recorded as failed with the reason, and the worker goes on with the next one.
Real worker processes, real CHGNet, the local dispatcher and the Relaxations service a
campaign's relax step uses."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from dft_helpers import rocksalt
from pymatgen.core import Lattice, Structure

from gnomon.config import Settings
from gnomon.dft import worker
from gnomon.dft.forcefield import CHGNetEngine
from gnomon.dft.limits import RelaxLimits, run_limited
from gnomon.dft.local import LocalDispatcher
from gnomon.dft.service import Relaxations
from gnomon.storage import CalcState, Calculation, Candidate, open_repository


def dense_lithium(n: int = 40, a: float = 2.8, seed: int = 0) -> Structure:
    """``n`` Li atoms in a cube of side ``a`` Angstrom: ~1.8 atoms per A^3 (lithium metal has
    0.046), what a generator with no volume check once wrote. CHGNet's graph of it needs
    gigabytes."""
    rng = np.random.default_rng(seed)
    return Structure(Lattice.cubic(a), ["Li"] * n, rng.random((n, 3)))


@pytest.mark.slow
def test_a_relaxation_past_its_memory_limit_fails_with_the_reason_and_the_batch_goes_on(
        tmp_path):
    repo = open_repository(f"sqlite:///{tmp_path / 'g.db'}")
    service = Relaxations(repo, tmp_path / "runs", {"local": LocalDispatcher(max_workers=1)},
                          pack=2, limits=RelaxLimits(memory_gb=1.5, wall_time_s=1200))
    engine = CHGNetEngine(fmax=0.5, steps=15)
    # one batch: the runaway first, then a sane cell the same worker must still relax
    service.submit([dense_lithium(), rocksalt(4.3, "Li", "F")], engine, "local")
    service.wait(poll_s=1.0, timeout_s=1500)
    calcs = {repo.get(Candidate, c.candidate_id).reduced_formula: c
             for c in repo.query(Calculation)}
    repo.close()
    runaway, sane = calcs["Li"], calcs["LiF"]
    assert runaway.state is CalcState.failed
    assert "memory limit of 1.5 GiB per relaxation" in runaway.failure_reason
    assert "relax_limits.memory_gb" in runaway.failure_reason
    assert sane.state is CalcState.done and sane.entry_id is not None
    assert runaway.batch_id == sane.batch_id  # the same worker process went on after it


def _processes_naming(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_a_relaxation_past_its_wall_time_is_killed_with_what_it_started(tmp_path):
    endless = CHGNetEngine(fmax=1e-9, steps=10**6)
    slow, quick = tmp_path / "endless", tmp_path / "quick"
    worker.write_job(slow, "c-endless", endless.spec(), rocksalt(4.3, "Li", "F").as_dict(),
                     RelaxLimits(wall_time_s=4))
    worker.write_job(quick, "c-quick", CHGNetEngine(fmax=0.5, steps=5).spec(),
                     rocksalt(4.3, "Li", "F").as_dict(), RelaxLimits(wall_time_s=600))
    done = subprocess.run([sys.executable, "-m", "gnomon.cli", "worker", str(slow), str(quick)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 1  # one of the two failed
    reason = worker.read_error(slow)
    assert reason.startswith("stopped after the wall-time limit of 4 s per relaxation"), reason
    assert not (slow / worker.RESULT).exists()
    assert worker.read_result(quick).energy < 0
    assert _processes_naming(str(slow)) == []  # the forked relaxation is gone too


def test_limits_are_applied_in_the_child_and_a_killed_child_is_reported(tmp_path):
    seen = tmp_path / "seen.json"

    def look() -> int:
        seen.write_text(json.dumps({
            "oom_score_adj": Path("/proc/self/oom_score_adj").read_text().strip(),
            "data_limit": resource.getrlimit(resource.RLIMIT_DATA)[0],
            "pid": os.getpid()}))
        return 0

    assert run_limited(look, 3 * 1024**3, 60) is None
    child = json.loads(seen.read_text())
    assert child["oom_score_adj"] == "1000"  # the kernel's OOM killer takes it first
    assert child["data_limit"] == 3 * 1024**3
    assert child["pid"] != os.getpid()
    assert resource.getrlimit(resource.RLIMIT_DATA)[0] != 3 * 1024**3  # the worker is not

    def die() -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(5)
        return 0

    reason = run_limited(die, 2 * 1024**3, 60)
    assert reason == ("the relaxation process was killed by SIGKILL; with a memory limit of "
                      "2.0 GiB most likely out of memory")


def test_site_settings_set_the_limits_every_job_carries(tmp_path, monkeypatch):
    monkeypatch.setenv("GNOMON_RELAX_LIMITS__WALL_TIME_S", "90")
    s = Settings(relax_limits={"memory_gb": 6})
    assert s.relax_limits == RelaxLimits(memory_gb=6, wall_time_s=90)
    assert RelaxLimits().memory_bytes() == pytest.approx(
        0.4 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), rel=1e-6)
    repo = open_repository(f"sqlite:///{tmp_path / 'g.db'}")
    service = Relaxations(repo, tmp_path / "runs", {"local": LocalDispatcher()},
                          limits=s.relax_limits)
    service.submit([rocksalt(4.3, "Li", "F")], CHGNetEngine(), "local", dispatch=False)
    (calc,) = repo.query(Calculation)
    repo.close()
    job = json.loads((Path(calc.workdir) / worker.JOB).read_text())
    assert job["limits"] == {"memory_gb": 6.0, "wall_time_s": 90.0, "enabled": True}
    assert CHGNetEngine.wall_time_s == 3600.0  # what a force field gets with no site setting
