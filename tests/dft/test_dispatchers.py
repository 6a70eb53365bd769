"""Dispatcher pieces that need no queue: SLURM scripts from site settings, jobflow-remote
project configuration, the dispatcher factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from gnomon.config import Settings
from gnomon.dft.dispatcher import BatchState, make_dispatcher
from gnomon.dft.errors import DispatchError
from gnomon.dft.jobflow_remote import (
    JobflowRemoteDispatcher,
    project_config,
    validate_project_config,
)
from gnomon.dft.local import LocalDispatcher
from gnomon.dft.settings import SlurmSettings
from gnomon.dft.slurm import SlurmDispatcher

SITE = SlurmSettings(
    partition="compute", account="mat123", qos="normal", walltime="12:00:00", nodes=2, ntasks=64,
    cpus_per_task=1, modules=["quantum-espresso/7.2", "openmpi"], environment={"OMP_NUM_THREADS": "1"},
    pre_run=["source /opt/site/env.sh"], python="/opt/gnomon/bin/python",
)


def test_slurm_script_carries_the_site_settings(tmp_path):
    script = SlurmDispatcher(SITE).script([tmp_path / "a", tmp_path / "b"], "gnomon-abc-1", tmp_path / "batches")
    for line in ("#SBATCH --partition=compute", "#SBATCH --account=mat123", "#SBATCH --qos=normal",
                 "#SBATCH --time=12:00:00", "#SBATCH --nodes=2", "#SBATCH --ntasks=64",
                 "#SBATCH --job-name=gnomon-abc-1", f"#SBATCH --output={tmp_path}/batches/gnomon-abc-1.out",
                 "module load quantum-espresso/7.2", "module load openmpi", "export OMP_NUM_THREADS=1",
                 "source /opt/site/env.sh",
                 f"/opt/gnomon/bin/python -m gnomon.cli worker {tmp_path}/a {tmp_path}/b"):
        assert line in script.splitlines(), line
    minimal = SlurmDispatcher(SlurmSettings()).script([tmp_path], "x", tmp_path)
    assert "--partition" not in minimal and "--account" not in minimal and "module" not in minimal


def test_slurm_not_found(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DispatchError, match="SLURM not found: sbatch"):
        SlurmDispatcher().check()


def test_jobflow_remote_project_config():
    config = project_config("mongodb://user:pw@db.example.org:27018/campaigns", SITE, "/scratch/gnomon")
    assert validate_project_config(config) == []
    worker = config["workers"]["gnomon-slurm"]
    assert worker["scheduler_type"] == "slurm" and worker["resources"]["partition"] == "compute"
    assert worker["resources"]["time"] == "12:00:00" and "module load openmpi" in worker["pre_run"]
    store = config["queue"]["store"]
    assert store == {"type": "MongoStore", "host": "db.example.org", "port": 27018, "database": "campaigns",
                     "collection_name": "jf_queue", "username": "user", "password": "pw"}
    broken = {**config, "queue": {"store": {"type": "JSONStore"}}, "workers": {}}
    problems = validate_project_config(broken)
    assert any("workers" in p for p in problems) and any("MongoStore" in p for p in problems)
    with pytest.raises(DispatchError, match="needs a MongoDB URL"):
        project_config("sqlite:///x.db", SITE, "/scratch")


def test_jobflow_remote_without_mongodb_says_so():
    with pytest.raises(DispatchError, match="jobflow-remote"):
        JobflowRemoteDispatcher().check()


def test_factory(tmp_path):
    s = Settings(slurm={"partition": "debug"})
    assert isinstance(make_dispatcher("local", s, workers=3), LocalDispatcher)
    assert make_dispatcher("local", s, workers=3).max_active == 3
    assert make_dispatcher("slurm", s).settings.partition == "debug"
    assert make_dispatcher("jobflow-remote", s).config == {}  # SQLite database: no MongoDB
    with pytest.raises(ValueError, match="unknown dispatcher"):
        make_dispatcher("pbs", s)


def test_local_dispatcher_polls_and_cancels(tmp_path):
    disp = LocalDispatcher(max_workers=1, python="/bin/sleep")
    # the "worker" here is `sleep <dir>`: an invalid duration, so it exits at once
    bid = disp.submit([Path("0.1")], "x", tmp_path)
    assert bid.startswith("local:")
    import time

    for _ in range(50):
        if not disp.poll([bid])[bid].active:
            break
        time.sleep(0.1)
    assert disp.poll([bid])[bid].state in (BatchState.finished, BatchState.failed)
    assert disp.poll(["local:1:0"])["local:1:0"].state == BatchState.finished  # pid reused: not ours
    disp.cancel(bid)  # an ended batch: no error
