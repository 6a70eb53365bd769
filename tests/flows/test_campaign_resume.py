"""A campaign killed mid-round (SIGKILL) and resumed ends with the database an uninterrupted
run produces, and repeats no relaxation. Real components: Prefect's engine, CHGNet
relaxations in local worker processes, SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gnomon.storage import CalcState, Calculation, Candidate, Entry, Phase, Round, open_repository

pytestmark = [pytest.mark.slow]

CONFIG = {
    "name": "resume-test",
    "elements": ["Li", "Na", "O"],
    "rounds": 2,
    "seed": 3,
    "known_phases": False,  # the published Li-Na-O phases add relaxations, not resume cases
    "saps": {"max_candidates": 12, "max_template_sites": 4, "max_per_template": 3},
    "random_search": {"n_per_composition": 1, "max_compositions": 2, "max_atoms": 6},
    "compositions": {"max_atoms": 5},
    "model": {
        "ensemble_size": 2,
        "hidden": 16,
        "layers": 1,
        "max_epochs": 15,
        "patience": 5,
        "min_entries": 4,
    },
    "selection": {
        "policy": "threshold",
        "threshold": 1.0,
        "budget": 3,
        "exploration": 0.0,
        "max_per_group": 2,
    },
    "engine": {"name": "mlip", "options": {"fmax": 0.5, "steps": 15}},
    # one worker process at a time, two relaxations each (one process start per pair): round 1
    # stays part-way through its relaxations for several seconds, wide enough for the test to
    # land its SIGKILL there
    "dispatch": {"name": "local", "workers": 1, "pack": 2, "poll_interval": 0.5},
}


def _campaign(home: Path, config: Path, extra_env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "GNOMON_HOME": str(home), **(extra_env or {})}
    # its own process group, so the Prefect server it starts can be found after a SIGKILL
    return subprocess.Popen(
        [sys.executable, "-m", "gnomon.cli", "campaign", "run", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _snapshot(home: Path) -> dict:
    with open_repository(f"sqlite:///{home / 'gnomon.db'}") as repo:
        return {
            "candidates": sorted(c.id for c in repo.query(Candidate)),
            "calculations": sorted((c.id, c.state.value) for c in repo.query(Calculation)),
            "entries": sorted((e.id, round(e.energy, 5)) for e in repo.query(Entry)),
            "phases": sorted(
                (p.id, round(p.e_above_hull, 5), p.is_stable) for p in repo.query(Phase)
            ),
            "rounds": sorted(
                (r.index, tuple(sorted(r.outputs.get("select", {}).get("selected", []))))
                for r in repo.query(Round)
            ),
        }


def _state(home: Path) -> tuple[int, int]:
    """(round-1 calculations done, round-1 calculations in all) as the database says now."""
    db = home / "gnomon.db"
    if not db.exists():
        return 0, 0
    with open_repository(f"sqlite:///{db}") as repo:
        return repo.count("calculations", {"round": 1, "state": "done"}), repo.count(
            "calculations", {"round": 1}
        )


def test_sigkill_mid_round_then_resume_equals_uninterrupted(tmp_path):
    config = tmp_path / "campaign.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    # the uninterrupted run fans its stages out on a Dask LocalCluster; the killed one uses
    # threads: with the same seeds the databases must still agree
    dask_config = tmp_path / "campaign-dask.yaml"
    dask_config.write_text(yaml.safe_dump({**CONFIG, "task_runner": "dask"}))

    straight = tmp_path / "straight"
    proc = _campaign(straight, dask_config)
    out, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, out
    assert "report:" in out

    killed = tmp_path / "killed"
    proc = _campaign(killed, config)
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline:  # wait until round 1 is part-way through its relaxations
        done, total = _state(killed)
        if 1 <= done < total:
            break
        assert proc.poll() is None, "the campaign finished before the test could interrupt it"
        time.sleep(0.2)
    else:
        pytest.fail("round 1 never started relaxing")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The killed campaign never ran its exit handlers, so its ephemeral Prefect server lives on
    # (it outlived the whole test run before); its relaxation workers run in sessions of their
    # own (gnomon.dft.local) and are not in this group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    with open_repository(f"sqlite:///{killed / 'gnomon.db'}") as repo:
        before = {c.id: (c.state, c.attempts) for c in repo.query(Calculation)}
    assert any(state is CalcState.done for state, _ in before.values())

    proc = _campaign(killed, config)
    out, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, out

    assert _snapshot(killed) == _snapshot(straight)
    with open_repository(f"sqlite:///{killed / 'gnomon.db'}") as repo:
        after = {c.id: c for c in repo.query(Calculation)}
    for cid, (state, attempts) in before.items():
        if state is CalcState.done:  # finished before the kill: never run again
            assert after[cid].attempts == attempts
    assert all(c.attempts == 1 for c in after.values())
    runs = [
        line
        for c in after.values()
        for line in Path(c.workdir, "attempts.log").read_text().splitlines()
    ]
    assert len(runs) == len(after)  # one relaxation started per calculation, none repeated
