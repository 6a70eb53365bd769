"""Accidents to a running campaign, each ending with the database an undisturbed run of the same
campaign produces and no relaxation run twice. Real components: Prefect's engine, CHGNet
relaxations in local worker processes, SQLite, a real filesystem that fills.

- Disk full: the workspace (database, runs, models) is on a small tmpfs mounted by the test,
  which is filled while the round relaxes. The campaign stops with one line naming the file
  it could not write; the database checks clean while still full; once space is freed,
  `gnomon campaign resume` finishes. The filesystem is a real one (mount -t tmpfs: the test
  runs as root, as CI does); where mounting is not allowed the test skips, except in CI
  (CI=true), where it fails instead.
- Backup: `gnomon db backup` is taken while the round relaxes; the campaign is then killed and
  its database lost; the backup restores, checks clean, and the campaign resumes from it.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gnomon.storage import CalcState, Calculation, Candidate, Entry, Phase, Round, open_repository

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]

NAME = "accidents"
CONFIG = {
    "name": NAME,
    "elements": ["Li", "Na", "O"],
    "rounds": 1,
    "seed": 3,
    "known_phases": False,
    "saps": {"max_candidates": 12, "max_template_sites": 4, "max_per_template": 3},
    "random_search": {"n_per_composition": 1, "max_compositions": 2, "max_atoms": 6},
    "compositions": {"max_atoms": 5},
    "model": {"ensemble_size": 2, "hidden": 16, "layers": 1, "max_epochs": 15, "patience": 5,
              "min_entries": 4},
    "selection": {"policy": "threshold", "threshold": 1.0, "budget": 4, "exploration": 0.0,
                  "max_per_group": 2},
    "engine": {"name": "mlip", "options": {"fmax": 0.5, "steps": 15}},
    # one worker process at a time, two relaxations each: the round stays part-way through
    # its relaxations for a while, wide enough for the test to act there
    "dispatch": {"name": "local", "workers": 1, "pack": 2, "poll_interval": 0.5},
}
WAIT_S = 1500


def _gnomon(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gnomon.cli", *args],
        env={**os.environ, "GNOMON_HOME": str(home)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=WAIT_S)
    return proc.returncode, out, err


def _url(home: Path) -> str:
    return f"sqlite:///{home / 'gnomon.db'}"


def snapshot(home: Path) -> dict:
    with open_repository(_url(home), read_only=True) as repo:
        return {
            "candidates": sorted(c.id for c in repo.query(Candidate)),
            "calculations": sorted((c.id, c.state.value) for c in repo.query(Calculation)),
            "entries": sorted((e.id, round(e.energy, 5)) for e in repo.query(Entry)),
            "phases": sorted((p.id, round(p.e_above_hull, 5), p.is_stable)
                             for p in repo.query(Phase)),
            "rounds": sorted((r.index, tuple(sorted(r.outputs.get("select", {})
                                                    .get("selected", []))))
                             for r in repo.query(Round)),
        }


def _calcs(home: Path) -> dict[str, Calculation]:
    if not (home / "gnomon.db").exists():
        return {}
    with open_repository(_url(home), read_only=True) as repo:
        return {c.id: c for c in repo.query(Calculation)}


def _wait_part_way(home: Path, proc: subprocess.Popen) -> dict[str, Calculation]:
    """Wait until some of the round's relaxations are done and some are not."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        calcs = _calcs(home)
        candidates = [c for c in calcs.values() if c.round == 0]
        done = sum(c.state is CalcState.done for c in candidates)
        if 1 <= done < len(candidates) and len(candidates) >= 4:
            return calcs
        assert proc.poll() is None, "the campaign finished before the test could act"
        time.sleep(0.2)
    pytest.fail("the round never got part-way through its relaxations")


def _workers_gone(home: Path, timeout_s: float = 600) -> None:
    """Wait for the relaxation workers of ``home`` (detached from the campaign) to end."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = []
        for proc in Path("/proc").iterdir():
            try:
                cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "worker" in cmd and str(home) in cmd:
                alive.append(proc.name)
        if not alive:
            return
        time.sleep(1)
    pytest.fail(f"relaxation workers of {home} still running: {alive}")


def _started_once(home: Path) -> None:
    """Every calculation's relaxation was started exactly once (none repeated, none lost)."""
    for calc in _calcs(home).values():
        lines = Path(calc.workdir, "attempts.log").read_text().splitlines()
        assert len(lines) == 1, (calc.id, lines)


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory, prefect_home) -> dict:
    os.environ["PREFECT_HOME"] = str(prefect_home)
    tmp = tmp_path_factory.mktemp("undisturbed")
    config = tmp / "campaign.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    code, out, err = _finish(_gnomon(tmp / "home", "campaign", "run", str(config)))
    assert code == 0, err[-3000:]
    return snapshot(tmp / "home")


def _fill(directory: Path) -> Path:
    """Write a file in ``directory`` until its filesystem has no room left (unbuffered: a
    buffered file would fail again when closed)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_disk_full_stops_in_one_line_and_resume_loses_nothing(tmp_path, small_filesystem,
                                                                undisturbed):
    home = small_filesystem / "home"
    config = tmp_path / "campaign.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    proc = _gnomon(home, "campaign", "run", str(config))
    before = _wait_part_way(home, proc)
    filler = _fill(small_filesystem)
    code, out, err = _finish(proc)

    assert code == 1, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    # named: the file it could not write, or the directory it found full while waiting
    assert lines[-1].startswith(f"error: campaign {NAME} stopped: disk full: "), lines[-1]
    assert f"{small_filesystem}/home/" in lines[-1], lines[-1]
    assert f"`gnomon campaign resume {NAME}`" in lines[-1]
    assert "Traceback" not in err
    # full as it is, the database holds only whole transactions
    checked = _gnomon(home, "db", "check")
    assert _finish(checked)[0] == 0

    filler.unlink()
    code, out, err = _finish(_gnomon(home, "campaign", "resume", NAME))
    assert code == 0, err[-3000:]
    assert snapshot(home) == undisturbed
    after = _calcs(home)
    for cid, calc in before.items():
        if calc.state is CalcState.done:  # finished before the disk filled: never run again
            assert after[cid].attempts == calc.attempts
    _started_once(home)


def test_backup_during_the_campaign_restores_checks_clean_and_resumes(tmp_path, undisturbed):
    home = tmp_path / "home"
    config = tmp_path / "campaign.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    proc = _gnomon(home, "campaign", "run", str(config))
    _wait_part_way(home, proc)
    backup = tmp_path / "backup.db"
    code, out, err = _finish(_gnomon(home, "db", "backup", str(backup)))
    assert code == 0, err
    assert proc.poll() is None  # it was taken while the campaign ran
    time.sleep(5)  # the campaign goes on past the backup, then is lost
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _workers_gone(home)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{home / 'gnomon.db'}{suffix}").unlink(missing_ok=True)

    code, out, err = _finish(_gnomon(home, "db", "restore", str(backup)))
    assert code == 0, err
    code, out, err = _finish(_gnomon(home, "db", "check"))
    assert code == 0, err
    code, out, err = _finish(_gnomon(home, "campaign", "resume", NAME))
    assert code == 0, err[-3000:]
    assert snapshot(home) == undisturbed
    _started_once(home)
