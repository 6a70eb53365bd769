"""gnomon.flows.distributed on a LocalCluster: chunks come back in chunk order, a chunk whose
worker process dies is computed again, and an error of the chunk itself is raised. (A whole
round fanned out, on SLURM workers, is test_distributed_slurm.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import dask
import distributed  # noqa: F401 - its config defaults must be loaded before dask.config.set
import pytest

from gnomon.config import DaskConfig
from gnomon.flows.distributed import close_clusters, map_chunks, runtime

pytestmark = pytest.mark.slow

SITE = Path(__file__).resolve().parent / "dask_site"  # chunk functions the workers can import


@pytest.fixture(scope="module")
def local():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")])))
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
    out = list(map_chunks(partial(square_dying_once, str(tmp_path)), chunks, client, max_in_flight=3))
    assert out == [[x * x for x in c] for c in chunks]
    assert (tmp_path / "died-2").exists()  # the worker did die, and its chunk ran again
    assert "chunk lost with its worker" in caplog.text and "resubmitted (1/3)" in caplog.text
    assert runtime(local).client is client  # one cluster per process and configuration

    with pytest.raises(ValueError, match="bad item 5"):
        list(map_chunks(fails_on_five, chunks, client))

