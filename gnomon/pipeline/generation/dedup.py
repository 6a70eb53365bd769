"""Remove duplicate candidates, within a stream and against the database, exactly.

"Duplicate" means what pymatgen's StructureMatcher says at the configured tolerances
(``ltol``, ``stol``, ``angle_tol``; ``primitive_cell=True``, ``scale=True``,
``attempt_supercell=False``): the candidates kept are exactly the representatives
``StructureMatcher.group_structures`` would pick from the stored records followed by the stream
(the first of each group, each later structure compared with the representatives in order).

Sieves, cheapest first:

1. identity: a candidate whose id (its structure hash) is already kept or stored is a
   duplicate; one indexed ``existing_ids`` lookup per chunk.
2. bucket: the key of :mod:`gnomon.pipeline.generation.fingerprint` (the reduced formula) names
   the only
   records that can match; stored candidates and entries are found through the indexed
   ``reduced_formula`` column, one query per chunk. The module docstring there proves that
   StructureMatcher never matches structures with different keys. A candidate whose bucket is
   empty is kept without reading its structure.
3. site count: within a bucket, the matcher's own reduced (primitive, Niggli) cells must hold
   the same number of sites; each structure is reduced once (``skip_structure_reduction``
   then skips the matcher's repeat of that work) and pairs with different counts are skipped.
4. lattice lengths: ``fit(ref, new)`` scales both reduced cells to a common volume and looks
   for a basis ``v`` of ref's lattice with ``|v_i| < (1 + ltol) l_i``, ``l`` the lengths of
   new's cell (``Lattice.find_all_mappings``); without one it returns False. The sorted
   lengths of any basis bound the lattice's successive minima from above, so a match needs
   ``lambda_k(ref) < (1 + ltol) l_(k)`` for k = 1, 2, 3, in units of each cell's V^(1/3)
   (the common scaling). ``lambda`` are the lengths of ref's reduced cell, which the matcher's
   reduction leaves Niggli-reduced (a Buerger cell, whose lengths are the successive minima in
   3D); pairs failing the bound by more than 0.1 % (a margin for the reduction's own
   tolerance) are skipped.
5. match: ``StructureMatcher.fit(representative, candidate)``, as group_structures calls it.

Cost per candidate depends on the chunk and on the sizes of its buckets, never on how many
records the database holds. Memory: the kept candidates of the stream are remembered in a
:class:`SeenStore` (in memory, or :class:`SQLiteSeenStore` on disk for streams too long to
hold, as the funnel of :mod:`gnomon.pipeline.generation.funnel` uses); stored records are read
per chunk and their reduced cells kept in a bounded cache.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from gnomon.pipeline.generation.fingerprint import dedup_key
from gnomon.pipeline.generation.streaming import chunked
from gnomon.storage import Candidate, Repository

logger = logging.getLogger(__name__)

_STORED_CACHE = 50_000
_LATTICE_MARGIN = 1.001


def _lattice_bounds(known: Known) -> None:
    """Set the volume-normalised successive minima and cell lengths of a reduced structure.

    The matcher's reduction ends with a Niggli reduction (``get_primitive_structure`` returns
    ``get_reduced_structure()`` of the primitive cell, or a copy of the Niggli cell it started
    from when there is none smaller), so the reduced cell's sorted lengths are the successive
    minima of its lattice; no second reduction is needed."""
    lattice = known.reduced.lattice  # type: ignore[union-attr]
    known.lengths = np.sort(lattice.abc) / lattice.volume ** (1 / 3)
    known.minima = known.lengths


@dataclass
class DedupStats:
    """What a deduplicator saw: candidates in, duplicates by kind, candidates kept, and the
    work done (reductions, pairs skipped by site count, matcher calls)."""

    seen: int = 0
    kept: int = 0
    same_id: int = 0
    matched: int = 0
    comparisons: int = 0
    skipped_by_sites: int = 0
    skipped_by_lattice: int = 0
    reductions: int = 0
    duplicate_of: dict[str, str] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return self.same_id + self.matched


@dataclass
class Known:
    """A structure in a bucket: its id, its structure dict, and (once needed) the matcher's
    reduced cell and its number of sites."""

    id: str
    structure: dict[str, Any]
    reduced: Structure | None = None
    nsites: int | None = None
    minima: np.ndarray | None = None  # successive minima of the reduced lattice / V^(1/3)
    lengths: np.ndarray | None = None  # the reduced cell's sorted lengths / V^(1/3)


class SeenStore(Protocol):
    """Where a deduplicator remembers the candidates it kept, bucket by key."""

    def bucket(self, key: str) -> list[Known]: ...
    def add(self, key: str, known: Known) -> None: ...
    def reduced(self, key: str, known: Known) -> None: ...
    def clear(self) -> None: ...
    def __contains__(self, cid: str) -> bool: ...


class MemorySeenStore:
    """Kept candidates in a dict of buckets (the default; grows with the stream)."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[Known]] = defaultdict(list)
        self._ids: set[str] = set()

    def bucket(self, key: str) -> list[Known]:
        return self._buckets.get(key, [])

    def add(self, key: str, known: Known) -> None:
        self._buckets[key].append(known)
        self._ids.add(known.id)

    def reduced(self, key: str, known: Known) -> None:
        """Nothing to do: the bucket holds the object that was reduced."""

    def clear(self) -> None:
        self._buckets.clear()
        self._ids.clear()

    def __contains__(self, cid: str) -> bool:
        return cid in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class SQLiteSeenStore:
    """Kept candidates in a scratch SQLite file: memory stays flat however long the stream.

    A bucket is read back when a later candidate has the same key; a reduced cell is written
    back once computed, so no structure is reduced twice. The ``cache_size`` most recently
    used bucket members stay parsed in memory (a bound, not a growth).
    """

    def __init__(self, path: str | Path, cache_size: int = 20_000) -> None:
        self.path = Path(path)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Known] = OrderedDict()  # recently used bucket members
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, key TEXT NOT NULL, "
            "nsites INTEGER, reduced INTEGER NOT NULL, doc BLOB NOT NULL)"
        )
        self._conn.execute("CREATE INDEX IF NOT EXISTS ix_seen_key ON seen (key)")
        self._n = self._conn.execute("SELECT COUNT(*) FROM seen").fetchone()[0]

    def bucket(self, key: str) -> list[Known]:
        out = []
        rows = self._conn.execute(
            "SELECT id FROM seen WHERE key=? ORDER BY rowid", (key,)
        ).fetchall()
        for (cid,) in rows:
            known = self._cache.get(cid)
            if known is None:
                nsites, reduced, doc = self._conn.execute(
                    "SELECT nsites, reduced, doc FROM seen WHERE id=?", (cid,)
                ).fetchone()
                d = orjson.loads(doc)
                known = Known(cid, d, Structure.from_dict(d) if reduced else None, nsites)
                if reduced:
                    _lattice_bounds(known)
                self._remember(known)
            else:
                self._cache.move_to_end(cid)
            out.append(known)
        return out

    def _remember(self, known: Known) -> None:
        self._cache[known.id] = known
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def add(self, key: str, known: Known) -> None:
        reduced = known.reduced is not None
        doc = known.reduced.as_dict() if reduced else known.structure  # type: ignore[union-attr]
        self._conn.execute(
            "INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?, ?)",
            (known.id, key, known.nsites, int(reduced), orjson.dumps(doc)),
        )
        self._remember(known)
        self._n += 1

    def reduced(self, key: str, known: Known) -> None:
        assert known.reduced is not None
        self._conn.execute(
            "UPDATE seen SET nsites=?, reduced=1, doc=? WHERE id=?",
            (known.nsites, orjson.dumps(known.reduced.as_dict()), known.id),
        )

    def clear(self) -> None:
        self._conn.execute("DELETE FROM seen")
        self._cache.clear()
        self._n = 0

    def __contains__(self, cid: str) -> bool:
        return self._conn.execute("SELECT 1 FROM seen WHERE id=?", (cid,)).fetchone() is not None

    def __len__(self) -> int:
        return self._n

    def close(self) -> None:
        self._conn.close()


@dataclass
class Deduplicator:
    """Keeps the first of every set of candidates StructureMatcher calls the same structure.

    Example::

        dedup = Deduplicator(repository=repo)
        for chunk in chunked(generator, 1000):
            fresh = dedup.unique(chunk)
            repo.add_candidates(fresh)

    ``repository`` is optional: without it only the stream is deduplicated.
    ``against_entries`` also compares with computed entries of the same reduced formula.
    ``remember=False`` forgets the stream after each chunk (use it when each chunk's kept
    candidates are written to the database before the next chunk, as ``gnomon generate
    --to-db`` does); ``seen`` chooses where the stream is remembered otherwise.
    """

    repository: Repository | None = None
    against_entries: bool = True
    remember: bool = True
    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0
    symprec: float | None = None  # unused; kept for callers of the symmetry-bucketed version
    record_duplicates: bool = True
    seen: Any = None
    stats: DedupStats = field(default_factory=DedupStats)

    def __post_init__(self) -> None:
        self.matcher = StructureMatcher(
            ltol=self.ltol,
            stol=self.stol,
            angle_tol=self.angle_tol,
            primitive_cell=True,
            scale=True,
            attempt_supercell=False,
        )
        if self.seen is None:
            self.seen = MemorySeenStore()
        self._stored_cache: OrderedDict[str, Known] = OrderedDict()

    # -- public verbs ---------------------------------------------------------------------
    def fingerprint(self, candidate: Candidate) -> str:
        """The candidate's dedup key (its reduced formula), set as its fingerprint."""
        key = candidate.reduced_formula or dedup_key(self.structure_of(candidate))
        candidate.fingerprint = key
        return key

    def unique(self, candidates: Iterable[Candidate]) -> list[Candidate]:
        """The candidates of one chunk that duplicate nothing seen before or stored."""
        chunk = list(candidates)
        if not chunk:
            return []
        for c in chunk:
            _check_structure_dict(c)
        keys = {c.id: self.fingerprint(c) for c in chunk}
        stored_ids = self._stored_ids([c.id for c in chunk])
        stored = self._stored_buckets(set(keys.values()))

        kept: list[Candidate] = []
        for c in chunk:
            self.stats.seen += 1
            if c.id in stored_ids or c.id in self.seen:
                self.stats.same_id += 1
                self._note_duplicate(c.id, c.id)
                continue
            key = keys[c.id]
            me = Known(c.id, c.structure)
            match = self._match(me, stored.get(key, ()), key, None)
            if match is None:
                match = self._match(me, self.seen.bucket(key), key, self.seen)
            if match is not None:
                self.stats.matched += 1
                self._note_duplicate(c.id, match)
                continue
            kept.append(c)
            self.stats.kept += 1
            self.seen.add(key, me)
        if not self.remember:
            self.forget()
        return kept

    def stream(
        self, candidates: Iterable[Candidate], chunk_size: int = 1000
    ) -> Iterator[Candidate]:
        """Deduplicate a stream chunk by chunk, yielding the candidates kept."""

        for chunk in chunked(candidates, chunk_size):
            yield from self.unique(chunk)

    def forget(self) -> None:
        """Drop what this deduplicator remembers of earlier chunks (not the statistics)."""
        self.seen.clear()

    @staticmethod
    def structure_of(candidate: Candidate) -> Structure:
        try:
            return Structure.from_dict(candidate.structure)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"candidate {candidate.id}: unreadable structure ({exc})") from exc

    # -- internals ------------------------------------------------------------------------
    def _note_duplicate(self, dup: str, original: str) -> None:
        if self.record_duplicates:
            self.stats.duplicate_of[dup] = original

    def _reduce(self, known: Known) -> Known:
        """The matcher's own reduction (primitive cell, then Niggli), done once per structure."""
        if known.reduced is None:
            try:
                structure = Structure.from_dict(known.structure)
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"candidate {known.id}: unreadable structure ({exc})") from exc
            known.reduced = self.matcher._get_reduced_structure(structure, True, niggli=True)
            known.nsites = len(known.reduced)
            _lattice_bounds(known)
            self.stats.reductions += 1
        return known

    def _match(self, me: Known, bucket: Iterable[Known], key: str, store: Any) -> str | None:
        for ref in bucket:
            if ref.reduced is None:
                self._reduce(ref)
                if store is not None:
                    store.reduced(key, ref)
            self._reduce(me)
            if ref.nsites != me.nsites:
                self.stats.skipped_by_sites += 1
                continue
            if np.any(ref.minima >= (1 + self.ltol) * me.lengths * _LATTICE_MARGIN):
                self.stats.skipped_by_lattice += 1
                continue
            self.stats.comparisons += 1
            if self.matcher.fit(ref.reduced, me.reduced, skip_structure_reduction=True):
                return ref.id
        return None

    def _stored_ids(self, ids: list[str]) -> set[str]:
        if self.repository is None:
            return set()
        return self.repository.existing_ids("candidates", ids)

    def _stored(self, cache_key: str, rid: str, structure: dict[str, Any]) -> Known:
        """A stored record as a bucket member, its reduced cell cached across chunks."""
        known = self._stored_cache.get(cache_key)
        if known is None:
            known = Known(rid, structure)
            self._stored_cache[cache_key] = known
            if len(self._stored_cache) > _STORED_CACHE:
                self._stored_cache.popitem(last=False)
        else:
            self._stored_cache.move_to_end(cache_key)
        return known

    def _stored_buckets(self, keys: set[str]) -> dict[str, list[Known]]:
        """Stored candidates and entries whose reduced formula is one of ``keys``."""
        buckets: dict[str, list[Known]] = defaultdict(list)
        if self.repository is None or not keys:
            return buckets
        wanted = sorted(keys)
        for doc in self.repository.find("candidates", {"reduced_formula": wanted}):
            buckets[doc["reduced_formula"]].append(
                self._stored(doc["id"], doc["id"], doc["structure"])
            )
        if self.against_entries:
            for doc in self.repository.find("entries", {"reduced_formula": wanted}):
                if doc.get("structure"):
                    rid = doc.get("candidate_id") or doc["id"]
                    buckets[doc["reduced_formula"]].append(
                        self._stored(f"entry:{doc['id']}", rid, doc["structure"])
                    )
        return buckets


def _check_structure_dict(candidate: Candidate) -> None:
    """Fail on a structure that cannot be read, even where it is never parsed (empty bucket)."""
    s = candidate.structure
    if not (
        isinstance(s, dict)
        and isinstance(s.get("lattice"), dict)
        and isinstance(s.get("sites"), list)
    ):
        raise ValueError(f"candidate {candidate.id}: unreadable structure (no lattice or sites)")


def dedup_structures(
    structures: Iterable[Structure], ltol: float = 0.2, stol: float = 0.3, angle_tol: float = 5.0
) -> list[int]:
    """Indices of the structures to keep (first of each matching set), exactly as
    :class:`Deduplicator` keeps them: the representatives ``group_structures`` picks."""
    dedup = Deduplicator(ltol=ltol, stol=stol, angle_tol=angle_tol, record_duplicates=False)
    keep: list[int] = []
    for i, s in enumerate(structures):
        me = Known(str(i), {}, None, None)
        me.reduced = dedup.matcher._get_reduced_structure(s, True, niggli=True)
        me.nsites = len(me.reduced)
        _lattice_bounds(me)
        key = dedup_key(s)
        if dedup._match(me, dedup.seen.bucket(key), key, None) is None:
            dedup.seen.add(key, me)
            keep.append(i)
    return keep
