"""gnomon.flows.distributed on a LocalCluster: chunks come back in chunk order, a chunk whose
worker process dies is computed again, an error of the chunk itself is raised, and a round
fanned out over the cluster stores what the same round in-process stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gnomon.config import DaskConfig
from gnomon.flows.distributed import close_clusters, map_chunks, runtime
from tests.flows.dask_round import run_round

pytestmark = pytest.mark.slow

SITE = Path(__file__).resolve().parent / "dask_site"  # chunk functions the workers can import


@pytest.fixture(scope="module")
def local():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")])))
        mp.syspath_prepend(str(SITE))
        yield DaskConfig(cluster="local", workers=2, cores=1, memory="2GB", start_timeout=60,
                         chunk_size=1, screen_chunk_size=5)
        close_clusters()


def test_chunks_come_back_in_order_and_a_dead_worker_loses_nothing(local, tmp_path):
    from functools import partial

    from dask_test_chunks import fails_on_five, square_dying_once

    client = runtime(local).client
    chunks = [list(range(i, i + 2)) for i in range(0, 12, 2)]
    out = list(map_chunks(partial(square_dying_once, str(tmp_path)), chunks, client, max_in_flight=3))
    assert out == [[x * x for x in c] for c in chunks]
    assert (tmp_path / "died-2").exists()  # the worker did die, and its chunk ran again
    assert runtime(local).client is client  # one cluster per process and configuration

    with pytest.raises(ValueError, match="bad item 5"):
        list(map_chunks(fails_on_five, chunks, client))


def test_round_on_a_local_cluster_stores_what_the_in_process_round_stores(local, tmp_path):
    from distributed import get_task_stream

    with get_task_stream(client=runtime(local).client) as stream:
        fanned = run_round(tmp_path / "dask", local.model_dump())
    # generation and screening ran as chunks on the workers
    assert {str(t["key"]).split("-")[0] for t in stream.data} >= {"saps", "random", "screen"}
    alone = run_round(tmp_path / "alone")
    assert fanned["unique"] and fanned["predictions"] and len(fanned["selected"]) == 6
    assert fanned == alone
