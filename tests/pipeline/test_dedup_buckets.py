"""Dedup bucket by bucket (what the Dask fan-out does) takes exactly the in-process decisions.

:meth:`Deduplicator.plan` cuts a chunk into bucket jobs, :func:`decide_buckets` decides them
anywhere (here: after a pickle round trip, in reverse order, one job at a time) and
:meth:`Deduplicator.apply` takes the verdicts back. On the disguised-duplicate corpus (SAPS
outcomes, volume-scaled copies of some, scaled copies of others stored beforehand: duplicates
only StructureMatcher sees), chunk after chunk, the kept candidates, their order, the duplicate
records, the reduced cells they carry and what is remembered equal ``unique``'s.
"""

from __future__ import annotations

import pickle
import sqlite3

import numpy as np
import orjson
import pytest
from pymatgen.core import Structure

from gnomon.pipeline.generation.dedup import (
    Deduplicator,
    MemorySeenStore,
    SQLiteSeenStore,
    decide_buckets,
)
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.streaming import chunked
from gnomon.pipeline.generation.templates import prototype_templates
from gnomon.storage import Candidate, open_repository


def scaled(candidates: list[Candidate], factor: float, tag: str) -> list[Candidate]:
    out = []
    for c in candidates:
        s = Structure.from_dict(c.structure)
        s.scale_lattice(s.volume * factor)
        out.append(candidate_from_structure(s, tag, id=f"{tag}-{c.id}"))
    return out


def disguised_corpus(max_sites: int = 4) -> tuple[list[Candidate], list[Candidate]]:
    """(anchors to store, query): SAPS of the small prototypes into Li-Mn-O, a scaled copy of
    every third outcome appended, and scaled copies of another third as the stored anchors;
    the query repeats two outcomes verbatim (identity duplicates)."""
    protos = [t for t in prototype_templates(max_sites=max_sites) if hasattr(t, "structure")]
    saps = list(SAPSGenerator(elements=("Li", "Mn", "O"), max_species=2).generate(protos))
    query = saps + scaled(saps[::3], 1.07, "copy") + [saps[0].model_copy(), saps[5].model_copy()]
    return scaled(saps[1::3], 0.95, "anchor"), query


def fresh(candidates: list[Candidate]) -> list[Candidate]:
    return [c.model_copy(deep=True) for c in candidates]


def by_buckets(dedup: Deduplicator, chunk: list[Candidate]) -> list[Candidate]:
    plan = dedup.plan(chunk)
    jobs = pickle.loads(pickle.dumps(plan.jobs))  # as they travel to a worker
    verdicts = [v for job in reversed(jobs) for v in decide_buckets([job], **dedup.tolerances)]
    return dedup.apply(plan, pickle.loads(pickle.dumps(verdicts)))


def summary(dedup: Deduplicator, kept: list[list[Candidate]]) -> dict:
    s = dedup.stats
    return {
        "kept": [[(c.id, c.extra.get("matcher_cell")) for c in chunk] for chunk in kept],
        "duplicate_of": dict(s.duplicate_of),
        "counts": (s.seen, s.kept, s.same_id, s.matched),
    }


@pytest.mark.slow  # ~1 min of StructureMatcher work, done twice
@pytest.mark.parametrize("seen", ["memory", "sqlite"])
def test_bucket_jobs_decide_exactly_what_unique_decides(tmp_path, seen):
    repo = open_repository(f"sqlite:///{tmp_path / 'gnomon.db'}")
    anchors, query = disguised_corpus()
    repo.add_candidates(Deduplicator(repository=repo).unique(anchors))

    straight = Deduplicator(repository=repo)
    kept_straight = [straight.unique(chunk) for chunk in chunked(fresh(query), 25)]

    store = SQLiteSeenStore(tmp_path / "seen.db") if seen == "sqlite" else MemorySeenStore()
    split = Deduplicator(repository=repo, seen=store)
    kept_split = [by_buckets(split, chunk) for chunk in chunked(fresh(query), 25)]

    assert summary(split, kept_split) == summary(straight, kept_straight)
    assert len(split.seen) == len(straight.seen) == straight.stats.kept
    s = straight.stats
    assert s.matched > 0 and s.same_id >= 2 and s.kept < len(query)  # the corpus has all kinds
    # what both remember answers a later chunk the same way
    again = scaled(query[:10], 1.03, "again")
    assert [c.id for c in by_buckets(split, fresh(again))] == [
        c.id for c in straight.unique(fresh(again))
    ]
    repo.close()


def test_a_verdict_that_answers_another_plan_is_refused(repo):
    _, query = disguised_corpus(max_sites=2)
    dedup = Deduplicator(repository=repo)
    plan = dedup.plan(query[:4])
    with pytest.raises(ValueError, match="do not answer"):
        dedup.apply(plan, decide_buckets(plan.jobs[1:]))


# -- the on-disk seen store: what it keeps of each member changes the work, never a decision.
# A long funnel reads its buckets back from SQLite; the store rules out members of another site
# count without reading them, keeps each member's lattice invariants once computed and builds a
# member's reduced cell only when a pair needs it.


def _reopened_run(path, chunks, legacy: bool = False, cache_size: int = 20_000):
    """Deduplicate chunk by chunk, the store closed and reopened (cold) before each chunk;
    with ``legacy`` the invariants column is dropped before reopening, as in a store written
    before it existed."""
    dedup = Deduplicator(seen=SQLiteSeenStore(path))
    kept = []
    for chunk in chunks:
        dedup.seen.close()
        if legacy:
            con = sqlite3.connect(path)
            con.execute("ALTER TABLE seen DROP COLUMN inv")
            con.commit()
            con.close()
        dedup.seen = SQLiteSeenStore(path, cache_size=cache_size)
        kept.append(dedup.unique(chunk))
    return dedup, kept


@pytest.mark.slow  # StructureMatcher on the corpus, three times
def test_a_cold_reopened_store_decides_exactly_what_memory_decides(tmp_path):
    _, query = disguised_corpus()
    memory = Deduplicator()
    kept_memory = [memory.unique(chunk) for chunk in chunked(fresh(query), 20)]

    disk, kept_disk = _reopened_run(tmp_path / "seen.db", list(chunked(fresh(query), 20)))
    assert summary(disk, kept_disk) == summary(memory, kept_memory)
    # the store did the site-count sieve itself, without reading those members
    assert disk.seen.sieved_out > 0
    # (it also counts members past a candidate's first match, which memory never reaches)
    assert disk.stats.skipped_by_sites >= memory.stats.skipped_by_sites
    assert disk.stats.reductions <= memory.stats.reductions  # no member reduced twice

    legacy, kept_legacy = _reopened_run(
        tmp_path / "legacy.db", list(chunked(fresh(query), 20)), legacy=True
    )
    assert summary(legacy, kept_legacy) == summary(memory, kept_memory)

    # a cache smaller than a bucket: loading members evicts others of the same bucket
    small, kept_small = _reopened_run(
        tmp_path / "small.db", list(chunked(fresh(query), 20)), cache_size=2
    )
    assert summary(small, kept_small) == summary(memory, kept_memory)


def test_kept_invariants_come_back_as_the_same_floats(tmp_path):
    _, query = disguised_corpus(max_sites=2)
    dedup = Deduplicator(seen=SQLiteSeenStore(tmp_path / "seen.db"))
    for chunk in chunked(fresh(query), 10):
        dedup.unique(chunk)
    computed = {k.id: k.inv for k in dedup.seen._cache.values() if k.sieved and k.inv is not None}
    assert computed
    dedup.seen.close()

    con = sqlite3.connect(tmp_path / "seen.db")
    rows = con.execute("SELECT id, key, nsites, inv FROM seen WHERE inv IS NOT NULL").fetchall()
    assert {cid for cid, *_ in rows} >= set(computed)
    for _cid, _, nsites, inv in rows:
        assert orjson.loads(inv)[0] == nsites
    con.close()

    store = SQLiteSeenStore(tmp_path / "seen.db")
    keys = {cid: key for cid, key, *_ in rows}
    for cid, inv in computed.items():
        back = next(k for k in store.bucket(keys[cid]) if k.id == cid)
        assert back.sieved and back.reduced is None  # nothing built yet
        for name in ("basis", "lengths", "angles", "minima"):
            assert np.array_equal(getattr(back.inv, name), getattr(inv, name))
        assert (back.inv.nsites, back.inv.slack) == (inv.nsites, inv.slack)
    store.close()
