"""A staged campaign on real codes: `stages: [screen, mlip, dft]` with `engine: qe` (Debian's
pw.x), CHGNet for the mlip stage, the local dispatcher, Prefect and SQLite, killed (SIGKILL)
once between the stages and resumed. Nothing is relaxed twice, the DFT stage relaxes exactly
what passed the mlip gate before the kill, from the ML-relaxed structures, and each DFT result
records its path candidate -> mlip entry -> dft entry.

Kept small for CI: Mg-Si (norm-conserving LDA pseudopotentials from quantum-espresso-data,
16 Ry, coarse k-points), one round of two candidates of at most three sites."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from gnomon.storage import CalcState, Calculation, Candidate, Entry, Phase, Round, open_repository

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PSEUDO_DIR = Path("/usr/share/espresso/pseudo")
PSEUDOS = {"Mg": "Mg.pz-n-vbc.UPF", "Si": "Si.pz-vbc.UPF"}
QE_OPTIONS = {
    "ecutwfc": 16.0,
    "kspacing": 0.6,
    "functional": "pz",
    "pseudo_family": "vbc",
    "pseudo_map": PSEUDOS,
}
CONFIG = {
    "name": "stages-qe",
    "elements": ["Mg", "Si"],
    "rounds": 1,
    "seed": 5,
    "known_phases": False,
    "stages": ["screen", "mlip", "dft"],
    "mlip_engine": "chgnet",
    "mlip_options": {"fmax": 0.1, "steps": 60},
    # wide enough that some candidates go on to dft: the gate itself is tested in test_stages.py
    "mlip_e_above_hull": 0.5,
    "saps": {"max_candidates": 8, "max_template_sites": 3, "max_per_template": 2},
    "random_search": {"enabled": False},
    "selection": {"policy": "greedy", "budget": 2, "exploration": 0.0, "max_per_group": 1},
    "model": {"min_entries": 50},  # no retraining in a one-round test
    "engine": {"name": "qe", "options": QE_OPTIONS},
    "dispatch": {"name": "local", "workers": 2, "pack": 2, "poll_interval": 0.3},
}


@pytest.fixture(scope="module")
def pw_x() -> str:
    exe = shutil.which("pw.x")
    if exe is None:
        pytest.skip("pw.x not on PATH: install quantum-espresso (infra/install-system-deps.sh)")
    missing = [f for f in PSEUDOS.values() if not (PSEUDO_DIR / f).is_file()]
    if missing:
        pytest.skip(f"no {', '.join(missing)} in {PSEUDO_DIR}: install quantum-espresso-data")
    return exe


def _campaign(home: Path, config: Path) -> subprocess.Popen:
    env = {**os.environ, "GNOMON_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "gnomon.cli", "campaign", "run", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _steps(db: Path) -> dict[str, str]:
    if not db.exists():
        return {}
    with open_repository(f"sqlite:///{db}") as repo:
        record = repo.get(Round, Round.key(CONFIG["name"], 0))
        return {k: v.value for k, v in record.steps.items()} if record is not None else {}


def test_staged_qe_campaign_killed_between_stages_resumes(pw_x, tmp_path):
    config = tmp_path / "campaign.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    home = tmp_path / "home"
    db = home / "gnomon.db"
    proc = _campaign(home, config)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # until the mlip stage is through its gate
        if _steps(db).get("mlip_gate") == "done":
            break
        if proc.poll() is not None:
            pytest.fail(f"the campaign ended before the mlip stage was done:\n{proc.stdout.read()}")
        time.sleep(0.05)
    else:
        pytest.fail("the mlip stage never finished")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the ephemeral Prefect server it started (its relaxation workers have sessions of their own)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    assert _steps(db).get("ingest") != "done"  # killed between the stages, before dft was ingested

    with open_repository(f"sqlite:///{db}") as repo:
        gate = repo.get(Round, Round.key(CONFIG["name"], 0)).outputs["mlip_gate"]
        mlip_scheme = repo.get(Round, Round.key(CONFIG["name"], 0)).outputs["mlip_relax"]["scheme"]
        mlip_before = sorted((e.id, e.energy) for e in repo.entries(scheme=mlip_scheme))
        calcs_before = {c.id: (c.state, c.attempts) for c in repo.query(Calculation)}
    assert gate["passed"], "no candidate went on to dft; widen mlip_e_above_hull in the test"

    proc = _campaign(home, config)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out

    with open_repository(f"sqlite:///{db}") as repo:
        record = repo.get(Round, Round.key(CONFIG["name"], 0))
        calcs = list(repo.query(Calculation))
        qe = [c for c in calcs if c.engine == "qe"]
        failed = "\n".join(
            f"{c.id}: {(c.failure_reason or '')[:400]}" for c in calcs if c.state != CalcState.done
        )
        assert not failed, failed
        # no relaxation repeated: one attempt and one start per calculation, across the kill
        assert all(c.attempts == 1 for c in calcs)
        runs = [
            line for c in calcs for line in Path(c.workdir, "attempts.log").read_text().splitlines()
        ]
        assert len(runs) == len(calcs)
        for cid, (_state, attempts) in calcs_before.items():
            assert next(c for c in calcs if c.id == cid).attempts == attempts
        # the mlip stage's results are the ones it had before the kill
        assert sorted((e.id, e.energy) for e in repo.entries(scheme=mlip_scheme)) == mlip_before
        assert record.outputs["mlip_gate"]["passed"] == gate["passed"]

        # the dft stage relaxed exactly what passed the gate (besides the elements), with QE
        references = set(record.outputs["references"]["relaxed"])
        assert {c.candidate_id for c in qe} - references == set(gate["passed"])
        dft_scheme = qe[0].scheme
        assert dft_scheme == "qe-pz-vbc" and mlip_scheme.startswith("mlip-chgnet")
        paths = record.outputs["ingest"]["paths"]
        assert len(paths) == len(gate["passed"])
        for path in paths:
            dft_entry = repo.get(Entry, path["dft_entry"])
            mlip_entry = repo.get(Entry, path["mlip_entry"])
            start = repo.get(Candidate, dft_entry.candidate_id)
            assert dft_entry.scheme == dft_scheme and mlip_entry.scheme == mlip_scheme
            assert (
                dft_entry.parent_entry_id == mlip_entry.id
                and start.parent_entry_id == mlip_entry.id
            )
            # QE started from the ML-relaxed cell (idealised to its space group)
            assert StructureMatcher().fit(
                Structure.from_dict(start.structure), Structure.from_dict(mlip_entry.structure)
            )
            assert mlip_entry.candidate_id == path["candidate"] == start.parent_candidate_id
        # no hull mixes schemes
        for scheme in (mlip_scheme, dft_scheme):
            entries = {e.id for e in repo.entries(scheme=scheme)}
            assert {p.id for p in repo.query(Phase, {"scheme": scheme})} == entries

        stages = record.metrics["stages"]
        assert stages["mlip"]["relaxed"] == len(record.outputs["select"]["selected"])
        assert stages["mlip"]["passed"] == stages["dft"]["calls"] == len(gate["passed"])
    report = (home / "reports" / CONFIG["name"] / "report.md").read_text()
    assert "## Stages" in report and mlip_scheme in report
