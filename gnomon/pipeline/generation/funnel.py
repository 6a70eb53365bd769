"""The funnel's mouth: generate -> dedup -> screen in fixed-size chunks, through bounded memory.

A GNoME-scale round pushes millions of generated candidates through an exact deduplicator
and the screening ensemble and keeps the few that pass. Nothing in that path needs the whole
stream at once, so :class:`Funnel` pulls one chunk of ``chunk_size`` candidates from a lazy
source (a generator's ``generate``), deduplicates it (:class:`~gnomon.pipeline.generation.dedup.
Deduplicator`; give it a :class:`~gnomon.pipeline.generation.dedup.SQLiteSeenStore` so that what it
remembers of the stream lives on disk), screens the survivors, hands the ones that pass to
``store`` and drops the chunk before pulling the next. What did not pass is only counted.

The bound is kept by construction and checked by a counter: ``FunnelCounts.max_buffered`` is
the largest number of candidates the funnel held at once (pulled from the source and not yet
dropped or stored); it never exceeds ``chunk_size``.

``after_chunk``, when given, is called with the running counts once a chunk is stored: the
point where everything the chunk pulled from the source is done with, which a caller that
resumes a killed run records (:mod:`gnomon.campaign.steps.funnel`).

The screen is any callable taking a chunk of candidates and returning one verdict per
candidate: ``True`` (passes), ``False`` (screened, does not pass) or a string (could not be
screened, and why). The caller hands it in: a campaign builds its screens from a model
ensemble (:mod:`gnomon.campaign.screens`), and this module imports no model.

Example (``ensemble_screen`` from :mod:`gnomon.campaign.screens`)::

    saps = SAPSGenerator(elements=("Li", "Mn", "O"))
    funnel = Funnel(Deduplicator(repository=repo, seen=SQLiteSeenStore(tmp / "seen.db")),
                    screen=ensemble_screen(ensemble, max_energy_per_atom=-5.0),
                    store=repo.add_candidates)
    counts = funnel.run(saps.generate(templates))
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gnomon.pipeline.generation.dedup import Deduplicator
from gnomon.pipeline.generation.streaming import chunked
from gnomon.storage import Candidate

logger = logging.getLogger(__name__)

Verdict = bool | str
Screen = Callable[[Sequence[Candidate]], Sequence[Verdict]]
STAGES = ("generate", "dedup", "screen", "store")


@dataclass
class FunnelCounts:
    """What went through the funnel, and the CPU seconds (``seconds``) and wall seconds
    (``wall``) each stage took in this process."""

    generated: int = 0
    duplicates: int = 0
    screened: int = 0
    unscreenable: int = 0
    failed: int = 0
    passed: int = 0
    stored: int = 0
    chunks: int = 0
    max_buffered: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FunnelCounts:
        """Counts as :meth:`as_dict` gave them (those of a run being resumed)."""
        out = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        for k in ("seconds", "wall"):  # stages a record of an older version lacks
            setattr(out, k, {**dict.fromkeys(STAGES, 0.0), **getattr(out, k)})
        return out


class _Stage:
    """Adds the CPU and wall seconds of its ``with`` block to ``counts`` under ``name``."""

    __slots__ = ("counts", "name", "cpu", "t")

    def __init__(self, counts: FunnelCounts, name: str) -> None:
        self.counts, self.name = counts, name

    def __enter__(self) -> None:
        self.cpu, self.t = time.process_time(), time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.counts.seconds[self.name] += time.process_time() - self.cpu
        self.counts.wall[self.name] += time.perf_counter() - self.t


@dataclass
class Funnel:
    """Generate -> dedup -> screen -> store, one chunk at a time (see the module docstring)."""

    dedup: Deduplicator
    screen: Screen
    store: Callable[[list[Candidate]], Any] | None = None
    chunk_size: int = 1000
    counts: FunnelCounts = field(default_factory=FunnelCounts)
    after_chunk: Callable[[FunnelCounts], Any] | None = None
    #: how a chunk is deduplicated: ``dedup.unique`` unless given (a round hands its fan-out's,
    #: which takes the same decisions, maybe on other machines)
    unique: Callable[[list[Candidate]], list[Candidate]] | None = None

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk size must be at least 1, not {self.chunk_size}")

    def run(self, candidates: Iterable[Candidate], limit: int | None = None) -> FunnelCounts:
        """Push ``candidates`` (at most ``limit``) through; returns the running counts."""
        source = iter(candidates) if limit is None else itertools.islice(candidates, limit)
        chunks = chunked(source, self.chunk_size)
        c = self.counts
        while True:
            with _Stage(c, "generate"):
                chunk = next(chunks, None)
            if chunk is None:
                return c
            c.chunks += 1
            c.generated += len(chunk)
            c.max_buffered = max(c.max_buffered, len(chunk))

            with _Stage(c, "dedup"):
                fresh = (self.unique or self.dedup.unique)(chunk)
            c.duplicates += len(chunk) - len(fresh)
            del chunk

            with _Stage(c, "screen"):
                verdicts = self.screen(fresh) if fresh else []
            if len(verdicts) != len(fresh):
                raise ValueError(
                    f"the screen returned {len(verdicts)} verdicts for {len(fresh)} candidates"
                )
            passing = self._tally(fresh, verdicts)
            del fresh, verdicts  # hold nothing of this chunk past its end

            if self.store is not None and passing:
                with _Stage(c, "store"):
                    self.store(passing)
                c.stored += len(passing)
            del passing
            if self.after_chunk is not None:
                self.after_chunk(c)

    def _tally(self, fresh: list[Candidate], verdicts: Sequence[Verdict]) -> list[Candidate]:
        """Count the verdicts; the candidates that pass."""
        c = self.counts
        passing = []
        for candidate, verdict in zip(fresh, verdicts, strict=True):
            if isinstance(verdict, str):
                c.unscreenable += 1
                c.reasons[verdict] = c.reasons.get(verdict, 0) + 1
                continue
            c.screened += 1
            if verdict:
                passing.append(candidate)
            else:
                c.failed += 1
        c.passed += len(passing)
        return passing
