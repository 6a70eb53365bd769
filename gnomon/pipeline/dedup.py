"""Remove duplicate candidates, within a batch and against the database.

Three sieves, cheapest first:

1. identity: a candidate whose structure hash (its ``id``) is already in the batch or the
   database is a duplicate; one indexed ``existing_ids`` lookup per chunk.
2. bucket: the fingerprint (:mod:`gnomon.pipeline.fingerprint`) names the only stored records
   that can match: stored candidates with the same indexed ``fingerprint`` and stored entries
   with the same indexed ``reduced_formula`` (entries carry no fingerprint; theirs is computed
   once per entry and cached).
3. match: pymatgen's StructureMatcher decides between a candidate and its bucket.

Each sieve asks the repository for one chunk's keys at a time through an index, so the cost
per candidate depends on the chunk and on the bucket sizes, never on how many records the
database holds. Memory holds one chunk plus the batch buckets; with ``remember=False`` the
batch buckets are dropped after each chunk (use it when each chunk is written to the
database before the next one is deduplicated, as ``gnomon generate --to-db`` does).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from gnomon.pipeline.fingerprint import FINGERPRINT_SYMPREC, fingerprint, formula_of
from gnomon.storage import Candidate, Repository

logger = logging.getLogger(__name__)

_ENTRY_FP_CACHE = 100_000


@dataclass
class DedupStats:
    """What a deduplicator saw: candidates in, duplicates by kind, candidates kept."""

    seen: int = 0
    kept: int = 0
    same_id: int = 0
    matched: int = 0
    comparisons: int = 0
    duplicate_of: dict[str, str] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return self.same_id + self.matched


@dataclass
class Deduplicator:
    """Keeps the first of every set of candidates StructureMatcher calls the same structure.

    Example::

        dedup = Deduplicator(repository=repo)
        for chunk in chunked(generator, 1000):
            fresh = dedup.unique(chunk)
            repo.add_candidates(fresh)

    ``repository`` is optional: without it only the batch is deduplicated.
    ``against_entries`` also compares with computed entries of the same reduced formula.
    """

    repository: Repository | None = None
    against_entries: bool = True
    remember: bool = True
    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0
    symprec: float = FINGERPRINT_SYMPREC
    record_duplicates: bool = True
    stats: DedupStats = field(default_factory=DedupStats)

    def __post_init__(self) -> None:
        self.matcher = StructureMatcher(
            ltol=self.ltol, stol=self.stol, angle_tol=self.angle_tol,
            primitive_cell=True, scale=True, attempt_supercell=False,
        )
        self._ids: set[str] = set()
        self._buckets: dict[str, list[tuple[str, Structure]]] = defaultdict(list)
        self._entry_fps: OrderedDict[str, str] = OrderedDict()

    # -- public verbs ---------------------------------------------------------------------
    def fingerprint(self, candidate: Candidate) -> str:
        """The candidate's fingerprint, computed and set when it has none."""
        if candidate.fingerprint is None:
            candidate.fingerprint = fingerprint(self.structure_of(candidate), self.symprec)
        return candidate.fingerprint

    def unique(self, candidates: Iterable[Candidate]) -> list[Candidate]:
        """The candidates of one chunk that duplicate nothing seen before or stored."""
        chunk = list(candidates)
        if not chunk:
            return []
        structures = {c.id: self.structure_of(c) for c in chunk}
        for c in chunk:
            self.fingerprint(c)
        stored_ids = self._stored_ids([c.id for c in chunk])
        stored = self._stored_buckets({c.fingerprint for c in chunk})  # type: ignore[misc]

        kept: list[Candidate] = []
        for c in chunk:
            self.stats.seen += 1
            if c.id in self._ids or c.id in stored_ids:
                self.stats.same_id += 1
                self._note_duplicate(c.id, c.id)
                continue
            s = structures[c.id]
            fp = c.fingerprint
            match = self._match(s, self._buckets.get(fp, ())) or self._match(s, stored.get(fp, ()))
            if match is not None:
                self.stats.matched += 1
                self._note_duplicate(c.id, match)
                continue
            kept.append(c)
            self.stats.kept += 1
            self._ids.add(c.id)
            self._buckets[fp].append((c.id, s))
        if not self.remember:
            self.forget()
        return kept

    def stream(self, candidates: Iterable[Candidate], chunk_size: int = 1000) -> Iterator[Candidate]:
        """Deduplicate a stream chunk by chunk, yielding the candidates kept."""
        from gnomon.pipeline.generation.streaming import chunked

        for chunk in chunked(candidates, chunk_size):
            yield from self.unique(chunk)

    def forget(self) -> None:
        """Drop what this deduplicator remembers of earlier chunks (not the statistics)."""
        self._ids.clear()
        self._buckets.clear()

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

    def _match(self, structure: Structure, bucket: Iterable[tuple[str, Structure]]) -> str | None:
        for other_id, other in bucket:
            self.stats.comparisons += 1
            if self.matcher.fit(structure, other):
                return other_id
        return None

    def _stored_ids(self, ids: list[str]) -> set[str]:
        if self.repository is None:
            return set()
        return self.repository.existing_ids("candidates", ids)

    def _stored_buckets(self, fps: set[str]) -> dict[str, list[tuple[str, Structure]]]:
        """Stored candidates and entries that share a fingerprint with this chunk."""
        buckets: dict[str, list[tuple[str, Structure]]] = defaultdict(list)
        if self.repository is None or not fps:
            return buckets
        for doc in self.repository.find("candidates", {"fingerprint": sorted(fps)}):
            buckets[doc["fingerprint"]].append((doc["id"], Structure.from_dict(doc["structure"])))
        if self.against_entries:
            formulas = sorted({formula_of(fp) for fp in fps})
            for doc in self.repository.find("entries", {"reduced_formula": formulas}):
                if not doc.get("structure"):
                    continue
                structure = Structure.from_dict(doc["structure"])
                fp = self._entry_fingerprint(doc["id"], structure)
                if fp in fps:
                    buckets[fp].append((doc.get("candidate_id") or doc["id"], structure))
        return buckets

    def _entry_fingerprint(self, entry_id: str, structure: Structure) -> str:
        fp = self._entry_fps.get(entry_id)
        if fp is None:
            fp = fingerprint(structure, self.symprec)
            self._entry_fps[entry_id] = fp
            if len(self._entry_fps) > _ENTRY_FP_CACHE:
                self._entry_fps.popitem(last=False)
        return fp


def dedup_structures(
    structures: Iterable[Structure], ltol: float = 0.2, stol: float = 0.3, angle_tol: float = 5.0
) -> list[int]:
    """Indices of the structures to keep (first of each matching set), by fingerprint buckets.

    The in-memory equivalent of :class:`Deduplicator` for plain structures.
    """
    matcher = StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol, primitive_cell=True,
                               scale=True, attempt_supercell=False)
    buckets: dict[str, list[Structure]] = defaultdict(list)
    keep: list[int] = []
    for i, s in enumerate(structures):
        fp = fingerprint(s)
        if any(matcher.fit(s, other) for other in buckets[fp]):
            continue
        buckets[fp].append(s)
        keep.append(i)
    return keep
