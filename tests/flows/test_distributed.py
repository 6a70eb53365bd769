"""gnomon.flows.distributed on a LocalCluster: chunks come back in chunk order, a chunk whose
worker process dies is computed again, and an error of the chunk itself is raised. (A whole
round fanned out, on SLURM workers, is test_distributed_slurm.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import dask
import distributed  # noqa: F401 - its config defaults must be loaded before dask.config.set
import pytest

from gnomon.config import CampaignConfig, DaskConfig, Settings
from gnomon.flows.distributed import close_clusters, map_chunks, runtime, slurm_cluster_options
from gnomon.flows.fanout import dask_config

pytestmark = pytest.mark.slow

SITE = Path(__file__).resolve().parent / "dask_site"  # chunk functions the workers can import


@pytest.fixture(scope="module")
def local():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))
        )
        mp.syspath_prepend(str(SITE))
        cfg = DaskConfig(cluster="local", workers=2, cores=1, memory="2GB", start_timeout=60)
        # the scheduler gives a task up at the first death of its worker (KilledWorker), so
        # what brings the chunk back is map_chunks' own resubmission
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            runtime(cfg)
        yield cfg
        close_clusters()


def test_chunks_come_back_in_order_and_a_dead_worker_loses_nothing(local, tmp_path, caplog):
    from functools import partial

    from dask_test_chunks import fails_on_five, square_dying_once

    client = runtime(local).client
    chunks = [list(range(i, i + 2)) for i in range(0, 12, 2)]
    out = list(
        map_chunks(partial(square_dying_once, str(tmp_path)), chunks, client, max_in_flight=3)
    )
    assert out == [[x * x for x in c] for c in chunks]
    assert (tmp_path / "died-2").exists()  # the worker did die, and its chunk ran again
    assert "chunk lost with its worker" in caplog.text and "resubmitted (1/3)" in caplog.text
    assert runtime(local).client is client  # one cluster per process and configuration

    with pytest.raises(ValueError, match="bad item 5"):
        list(map_chunks(fails_on_five, chunks, client))


def test_a_campaign_takes_its_own_dask_section_else_the_sites():
    site = Settings(dask={"cluster": "slurm", "workers": 4})
    plain = CampaignConfig(name="c", elements=["Li", "O"])
    assert dask_config(plain, Settings()) is None  # no section anywhere: in-process
    assert dask_config(plain, site).workers == 4
    own = CampaignConfig(name="c", elements=["Li", "O"], dask={"cluster": "local", "workers": 3})
    assert dask_config(own, site).cluster == "local"


def test_slurm_section_becomes_the_worker_job_script():
    from dask_jobqueue import SLURMCluster

    cfg = DaskConfig(
        cluster="slurm",
        cores=2,
        memory="3GB",
        walltime="00:20:00",
        queue="compute",
        account="chem",
        job_extra=["--qos=debug"],
        job_script_prologue=["module load foo"],
        python="/opt/py/bin/python",
    )
    with SLURMCluster(**slurm_cluster_options(cfg)) as cluster:  # no job submitted until scaled
        script = cluster.job_script()
    for line in (
        "#SBATCH -p compute",
        "#SBATCH -A chem",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH -t 00:20:00",
        "#SBATCH --qos=debug",
        "module load foo",
        "/opt/py/bin/python -m distributed.cli.dask_worker",
    ):
        assert line in script, (line, script)
    assert "--mem=" in script and "--nthreads 2" in script
