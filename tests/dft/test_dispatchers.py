"""Dispatcher pieces that need no queue: SLURM scripts from site settings, jobflow-remote
project configuration, the dispatcher factory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
from dft_helpers import si_diamond

from gnomon.config import Settings
from gnomon.dft.dispatcher import BatchState, BatchStatus, make_dispatcher
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
    partition="compute",
    account="mat123",
    qos="normal",
    walltime="12:00:00",
    nodes=2,
    ntasks=64,
    cpus_per_task=1,
    modules=["quantum-espresso/7.2", "openmpi"],
    environment={"OMP_NUM_THREADS": "1"},
    pre_run=["source /opt/site/env.sh"],
    python="/opt/gnomon/bin/python",
)


def test_slurm_script_carries_the_site_settings(tmp_path):
    script = SlurmDispatcher(SITE).script(
        [tmp_path / "a", tmp_path / "b"], "gnomon-abc-1", tmp_path / "batches"
    )
    for line in (
        "#SBATCH --partition=compute",
        "#SBATCH --account=mat123",
        "#SBATCH --qos=normal",
        "#SBATCH --time=12:00:00",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks=64",
        "#SBATCH --job-name=gnomon-abc-1",
        f"#SBATCH --output={tmp_path}/batches/gnomon-abc-1.out",
        "module load quantum-espresso/7.2",
        "module load openmpi",
        "export OMP_NUM_THREADS=1",
        "source /opt/site/env.sh",
        f"/opt/gnomon/bin/python -m gnomon.cli worker {tmp_path}/a {tmp_path}/b",
    ):
        assert line in script.splitlines(), line
    minimal = SlurmDispatcher(SlurmSettings()).script([tmp_path], "x", tmp_path)
    assert "--partition" not in minimal and "--account" not in minimal and "module" not in minimal


def test_slurm_not_found(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DispatchError, match="SLURM not found: sbatch"):
        SlurmDispatcher().check()


def test_jobflow_remote_project_config():
    config = project_config(
        "mongodb://user:pw@db.example.org:27018/campaigns", SITE, "/scratch/gnomon"
    )
    assert validate_project_config(config) == []
    worker = config["workers"]["gnomon-slurm"]
    assert worker["scheduler_type"] == "slurm" and worker["resources"]["partition"] == "compute"
    assert worker["resources"]["time"] == "12:00:00" and "module load openmpi" in worker["pre_run"]
    store = config["queue"]["store"]
    assert store == {
        "type": "MongoStore",
        "host": "db.example.org",
        "port": 27018,
        "database": "campaigns",
        "collection_name": "jf_queue",
        "username": "user",
        "password": "pw",
    }
    broken = {**config, "queue": {"store": {"type": "JSONStore"}}, "workers": {}}
    problems = validate_project_config(broken)
    assert any("workers" in p for p in problems) and any("MongoStore" in p for p in problems)
    with pytest.raises(DispatchError, match="needs a MongoDB URL"):
        project_config("sqlite:///x.db", SITE, "/scratch")


def test_jobflow_remote_without_mongodb_says_so():
    with pytest.raises(DispatchError, match="jobflow-remote"):
        JobflowRemoteDispatcher().check()


def test_jobflow_remote_job_is_found_by_name_on_the_remote_side(tmp_path):
    """A runner receives the Flow as JSON and must import the job's function by its name; the
    decoded job then runs gnomon's worker (here over one calculation of the fake engine)."""
    from gnomon_fake_engine import FakeEngine
    from jobflow import Flow, run_locally
    from monty.json import MontyDecoder, MontyEncoder

    from gnomon.dft import jobflow_remote, worker

    calc = tmp_path / "calc"
    worker.write_job(calc, "c1", FakeEngine().spec(), si_diamond().as_dict())
    sent = json.dumps(
        Flow([jobflow_remote.run_worker([str(calc)])], name="b").as_dict(), cls=MontyEncoder
    )

    received = json.loads(sent, cls=MontyDecoder)
    assert isinstance(received, Flow)
    (job,) = received.jobs
    assert getattr(job.function, "original", job.function) is jobflow_remote.gnomon_worker.original
    responses = run_locally(received, root_dir=tmp_path, log=False, raise_immediately=True)
    assert responses[job.uuid][1].output == 0
    assert worker.read_result(calc).engine == "fake"


def test_factory(tmp_path):
    s = Settings(slurm={"partition": "debug"})
    assert isinstance(make_dispatcher("local", s, workers=3), LocalDispatcher)
    assert make_dispatcher("local", s, workers=3).max_active == 3
    assert make_dispatcher("slurm", s).settings.partition == "debug"
    assert make_dispatcher("jobflow-remote", s).config == {}  # SQLite database: no MongoDB
    with pytest.raises(ValueError, match="unknown dispatcher 'pbs': choose one of local, slurm"):
        make_dispatcher("pbs", s)
    with pytest.raises(TypeError):
        make_dispatcher("local")  # settings are never read behind the caller's back


def _wait_until_ended(disp: LocalDispatcher, bid: str, polls: int = 200) -> BatchStatus:
    """Poll until the batch is no longer active (bounded, so a batch that never ends fails the
    caller's assertion instead of hanging the test)."""
    for _ in range(polls):
        status = disp.poll([bid])[bid]
        if not status.active:
            return status
        time.sleep(0.05)
    return disp.poll([bid])[bid]


def _sleeper(tmp_path: Path, seconds: int) -> str:
    """A stand-in for the worker's Python: ignores its arguments and sleeps."""
    exe = tmp_path / "sleeper"
    exe.write_text(f"#!/bin/sh\nexec sleep {seconds}\n")
    exe.chmod(0o755)
    return str(exe)


def test_local_dispatcher_cancels_a_running_batch(tmp_path):
    disp = LocalDispatcher(max_workers=1, python=_sleeper(tmp_path, 600))
    bid = disp.submit([tmp_path / "calc"], "x", tmp_path / "batches")
    pid = int(bid.split(":")[1])
    try:
        assert bid.startswith("local:")
        assert disp.poll([bid])[bid] == BatchStatus(BatchState.running)
        disp.cancel(bid)
        status = _wait_until_ended(disp, bid)
        assert status.state == BatchState.failed
        assert status.reason == f"killed by signal {int(signal.SIGTERM)}"
        disp.cancel(bid)  # an ended batch: no error
        assert disp.poll([bid])[bid].state != BatchState.running
    finally:  # a broken cancel must not leave a sleeper behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_local_dispatcher_sees_a_batch_end(tmp_path):
    disp = LocalDispatcher(max_workers=1, python=_sleeper(tmp_path, 0))
    bid = disp.submit([tmp_path / "calc"], "x", tmp_path / "batches")
    assert _wait_until_ended(disp, bid) == BatchStatus(BatchState.finished, "exit code 0")
    assert (
        disp.poll(["local:1:0"])["local:1:0"].state == BatchState.finished
    )  # pid reused: not ours
    assert disp.poll(["nonsense"])["nonsense"].state == BatchState.unknown
