"""The streaming funnel: bounded memory on a long stream (by counters), and its accounting."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation.dedup import Deduplicator, MemorySeenStore, SQLiteSeenStore
from gnomon.pipeline.generation.funnel import Funnel
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.templates import make_template
from gnomon.storage import Candidate

LIVE = [0]  # candidates created and not yet freed


class Tracked(Candidate):
    """A candidate that counts itself while alive."""

    def __del__(self) -> None:
        LIVE[0] -= 1


def tiny(i: int) -> Tracked:
    """A one-atom candidate with a formula of its own (its dedup bucket is empty)."""
    LIVE[0] += 1
    structure = {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {"matrix": [[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0 + i * 1e-4]]},
        "properties": {},
        "sites": [
            {
                "species": [{"element": "Li", "occu": 1}],
                "abc": [0, 0, 0],
                "properties": {},
                "label": "Li",
            }
        ],
    }
    # every 10th candidate repeats the previous id: a duplicate the identity sieve catches
    cid = f"c{i - 1 if i % 10 == 9 else i}"
    return Tracked.model_construct(
        id=cid,
        structure=structure,
        formula=f"Li{i}",
        reduced_formula=f"Li{i}X",
        chemsys="Li",
        nsites=1,
        generator="test",
        extra={},
    )


class Source:
    """A lazy stream that counts what it has handed out."""

    def __init__(self, n: int):
        self.n = n
        self.yielded = 0

    def __iter__(self):
        for i in range(self.n):
            self.yielded += 1
            yield tiny(i)


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_a_long_stream_never_holds_more_than_one_chunk(tmp_path, store_kind):
    n, chunk_size = 10_000, 250
    source = Source(n)
    stored: list[Candidate] = []
    peak = {"live": 0, "ahead": 0}
    funnel: Funnel

    def screen(chunk):
        # what the source has handed out beyond the chunks already taken: nothing
        peak["ahead"] = max(peak["ahead"], source.yielded - funnel.counts.generated)
        # alive now: this chunk's survivors, the candidates stored so far, nothing else
        peak["live"] = max(peak["live"], LIVE[0] - len(stored))
        return [int(c.id[1:]) % 100 == 0 for c in chunk]

    seen = MemorySeenStore() if store_kind == "memory" else SQLiteSeenStore(tmp_path / "seen.db")
    LIVE[0] = 0
    funnel = Funnel(
        Deduplicator(seen=seen, record_duplicates=False), screen, stored.extend, chunk_size
    )
    counts = funnel.run(source)

    assert source.yielded == counts.generated == n
    assert counts.chunks == n // chunk_size
    assert counts.max_buffered <= chunk_size
    assert peak["ahead"] == 0
    assert 0 < peak["live"] <= chunk_size
    assert counts.duplicates == n // 10
    assert counts.screened == n - n // 10 and counts.unscreenable == 0
    assert counts.passed == counts.stored == len(stored) == len({c.id for c in stored}) > 0
    assert counts.failed == counts.screened - counts.passed
    stored.clear()
    assert LIVE[0] == 0  # nothing else kept a candidate alive


def saltlike(a: float, species=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5] * 3]
    )


def test_funnel_counts_every_candidate_once_and_stores_only_what_passes():
    t = make_template("rs", saltlike(5.64), "test")
    generated = list(SAPSGenerator(elements=("Na", "K", "Cl"), partial_mode="sites").generate([t]))
    stream = generated + generated[:2]  # two repeats

    def screen(chunk):
        return [
            "no graph" if c.reduced_formula == "KCl" else c.replaced_fraction < 0.5 for c in chunk
        ]

    stored: list[Candidate] = []
    counts = Funnel(Deduplicator(), screen, stored.extend, chunk_size=3).run(stream)
    assert counts.generated == len(stream)
    assert counts.duplicates == 2
    assert counts.generated == counts.duplicates + counts.screened + counts.unscreenable
    assert counts.reasons == {"no graph": 1}
    assert [c.replaced_fraction for c in stored] == [0.25]
    assert counts.passed == counts.stored == 1 and counts.failed == counts.screened - 1


def test_a_screen_that_loses_verdicts_is_an_error():
    t = make_template("rs", saltlike(5.64), "test")
    stream = SAPSGenerator(elements=("Na", "K", "Cl"), partial_mode="sites").generate([t])
    with pytest.raises(ValueError, match="verdicts"):
        Funnel(Deduplicator(), lambda chunk: [], chunk_size=10).run(stream)
