"""Fixtures for gnomon.dft: structures, the fake engine's environment, pw.x and a real
single-node SLURM cluster (started by infra/slurm/start.sh, stopped at the end)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pymatgen.core import Structure

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dft_helpers import si_diamond  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = HERE / "data"
SLURM_DIR = Path(os.environ.get("GNOMON_SLURM_DIR", "/tmp/gnomon-slurm"))


@pytest.fixture
def si() -> Structure:
    return si_diamond()


@pytest.fixture
def fake_env() -> dict[str, str]:
    """Environment for worker processes so they import the fake engine."""
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "GNOMON_LOG_LEVEL": "INFO"}


# -- Quantum ESPRESSO -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pw_x() -> str:
    exe = shutil.which("pw.x")
    if exe is None:
        pytest.skip("pw.x not on PATH: install quantum-espresso (infra/install-system-deps.sh)")
    from gnomon.dft.qe import pseudo_dir_of
    from gnomon.dft.settings import QESettings

    pseudo = pseudo_dir_of(QESettings())
    if pseudo is None or not list(pseudo.glob("Si.pbe-*psl*.UPF")):
        pytest.skip("no PBE pslibrary Si pseudopotential: install quantum-espresso-data")
    return exe


# -- SLURM ----------------------------------------------------------------------------------------

def _sinfo_ok(env) -> bool:
    try:
        return (
            subprocess.run(["sinfo", "-h"], env=env, capture_output=True, timeout=10).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def slurm_cluster():
    """A single-node SLURM cluster on localhost for the session; SLURM_CONF points at it."""
    missing = [x for x in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(x) is None]
    if missing:
        pytest.skip(
            f"SLURM not installed ({', '.join(missing)} missing): run infra/install-system-deps.sh"
        )
    conf = SLURM_DIR / "slurm.conf"
    env = {**os.environ, "SLURM_CONF": str(conf), "GNOMON_SLURM_DIR": str(SLURM_DIR)}
    already = conf.exists() and _sinfo_ok(env)
    if not already:
        if os.geteuid() != 0:
            pytest.skip("starting munge/slurmd needs root; start infra/slurm/start.sh first")
        proc = subprocess.run(["bash", str(REPO / "infra/slurm/start.sh")], env=env,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            pytest.fail(f"infra/slurm/start.sh failed:\n{proc.stdout}\n{proc.stderr}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        yield conf
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        if not already:
            subprocess.run(["bash", str(REPO / "infra/slurm/stop.sh")], env=env,
                           capture_output=True, timeout=60, check=False)
