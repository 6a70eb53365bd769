"""Exact dedup fanned out on a LocalCluster: the Dask fan-out's kept candidates, their order,
the duplicate records, the reduced cells they carry and what the deduplicator remembers equal
the in-process deduplicator's, chunk after chunk, on the disguised-duplicate corpus (SAPS
outcomes, scaled copies of some, scaled copies of others stored beforehand); and a round whose
generation, dedup and screen run on the cluster stores what the same round stores in-process."""

from __future__ import annotations

import pytest

from gnomon.campaign.fanout import IN_PROCESS
from gnomon.config import DaskConfig
from gnomon.flows.distributed import close_clusters, runtime
from gnomon.flows.fanout import DaskFanOut, bucket_chunks
from gnomon.pipeline.generation.dedup import BucketJob, Deduplicator, SQLiteSeenStore
from gnomon.pipeline.generation.streaming import chunked
from gnomon.storage import open_repository
from tests.flows.dask_round import run_round
from tests.pipeline.test_dedup_buckets import disguised_corpus, fresh, summary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    cfg = DaskConfig(
        cluster="local", workers=2, cores=1, memory="2GB", start_timeout=120, dedup_chunk_size=8
    )
    runtime(cfg)
    yield cfg
    close_clusters()


def test_dedup_on_the_cluster_decides_exactly_what_in_process_dedup_decides(cluster, tmp_path):
    repo = open_repository(f"sqlite:///{tmp_path / 'gnomon.db'}")
    anchors, query = disguised_corpus()
    repo.add_candidates(Deduplicator(repository=repo).unique(anchors))

    here = Deduplicator(repository=repo)
    kept_here = [IN_PROCESS.dedup(here, chunk) for chunk in chunked(fresh(query), 40)]
    there = Deduplicator(repository=repo, seen=SQLiteSeenStore(tmp_path / "seen.db"))
    fan_out = DaskFanOut(cluster)
    kept_there = [fan_out.dedup(there, chunk) for chunk in chunked(fresh(query), 40)]

    assert summary(there, kept_there) == summary(here, kept_here)
    assert here.stats.matched > 0 and here.stats.same_id >= 2
    assert len(there.seen) == here.stats.kept
    repo.close()


def test_buckets_are_packed_whole_in_order():
    sizes = {"a": 3, "b": 9, "c": 1, "d": 2}
    jobs = [BucketJob(k, [None] * n, set(), [], []) for k, n in sizes.items()]
    chunks = [[j.key for j in c] for c in bucket_chunks(jobs, 4)]
    assert chunks == [["a", "b"], ["c", "d"]]


def test_a_round_on_the_cluster_stores_what_the_round_in_process_stores(cluster, tmp_path):
    straight = run_round(tmp_path / "in-process")
    fanned = run_round(tmp_path / "on-the-cluster", cluster.model_dump(mode="json"))
    assert straight["unique"] and straight["selected"]
    assert fanned == straight
