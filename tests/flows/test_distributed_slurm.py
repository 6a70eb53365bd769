"""A campaign round whose Dask workers are SLURM jobs (dask_jobqueue.SLURMCluster) on the real
single-node SLURM of infra/slurm: one worker job is scancelled while it computes a chunk, and
nothing is lost: its chunks run again on the other worker, and the round stores exactly what
the same round stores undisturbed (in-process)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from distributed import get_task_stream

from gnomon.config import DaskConfig
from gnomon.flows.distributed import close_clusters, runtime
from tests.flows.dask_round import run_round

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_DFT_CONFTEST = Path(__file__).resolve().parents[1] / "dft" / "conftest.py"


def _slurm_fixture_module():
    """tests/dft/conftest.py, whose ``slurm_cluster`` fixture starts (or finds) the cluster."""
    spec = importlib.util.spec_from_file_location("gnomon_tests_dft_conftest", _DFT_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slurm_cluster = _slurm_fixture_module().slurm_cluster


def _worker_jobs(client) -> dict[str, str]:
    """SLURM job id of each connected worker, by worker address."""
    return client.run(lambda: os.environ.get("SLURM_JOB_ID", ""))


def _job_state(job_id: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=10
    ).stdout
    return next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "")


class Saboteur(threading.Thread):
    """Waits until a worker computes a chunk of the round with the other worker connected,
    then scancels that worker's SLURM job, and records what it cancelled."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client = client
        self.jobs = _worker_jobs(client)
        self.cancelled: str | None = None
        self.was_computing: tuple[str, ...] = ()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            processing = self.client.processing()
            busy = {
                w: keys
                for w, keys in processing.items()
                if any(str(k).startswith(("random-", "screen-")) for k in keys)
            }
            if len(processing) >= 2 and busy:
                worker, keys = sorted(busy.items())[0]
                self.was_computing = tuple(str(k) for k in keys)
                self.cancelled = self.jobs[worker]
                subprocess.run(["scancel", self.cancelled], check=True, timeout=30)
                return
            time.sleep(0.05)


def test_scancelled_worker_job_loses_nothing(slurm_cluster, tmp_path):
    nodes = subprocess.run(
        ["scontrol", "show", "node"], capture_output=True, text=True, timeout=10
    ).stdout
    cpus = int(next(w.split("=")[1] for w in nodes.split() if w.startswith("CPUTot=")))
    # each worker job takes one CPU of the single node: with fewer, one job would stay pending
    assert cpus >= 2, f"the SLURM node has {cpus} CPU; the test needs 2 for its 2 worker jobs"
    dask = DaskConfig(
        cluster="slurm",
        workers=2,
        cores=1,
        processes=1,
        memory="2GB",
        walltime="00:15:00",
        queue="debug",
        interface="lo",
        log_directory=str(tmp_path / "dask-logs"),
        chunk_size=1,
        screen_chunk_size=4,
        start_timeout=120,
    )
    rt = runtime(dask)
    try:
        rt.client.wait_for_workers(2, timeout=120)
        jobs = _worker_jobs(rt.client)
        assert len(set(jobs.values())) == 2 and all(jobs.values())  # two workers, two SLURM jobs
        saboteur = Saboteur(rt.client)
        saboteur.start()
        with get_task_stream(client=rt.client) as stream:
            disturbed = run_round(tmp_path / "disturbed", dask.model_dump())
        # generation and screening ran as chunks on the SLURM workers
        assert {str(t["key"]).split("-")[0] for t in stream.data} >= {"saps", "random", "screen"}
        saboteur.stop.set()
        saboteur.join(timeout=10)
        assert saboteur.cancelled, "the round ended before a worker job could be cancelled"
        assert saboteur.was_computing  # it held a chunk of the round when it went
        for _ in range(50):
            if _job_state(saboteur.cancelled) == "CANCELLED":
                break
            time.sleep(0.2)
        assert _job_state(saboteur.cancelled) == "CANCELLED"
        assert saboteur.cancelled not in _worker_jobs(rt.client).values()  # gone for good
    finally:
        close_clusters()
    undisturbed = run_round(tmp_path / "undisturbed")
    assert disturbed["predictions"] and len(disturbed["selected"]) == 6
    assert disturbed == undisturbed
