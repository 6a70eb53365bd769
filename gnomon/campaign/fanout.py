"""Where a round's heavy, chunkable work runs: SAPS, the random search, exact dedup and the
screen.

The steps call a :class:`FanOut` in place of the generators, the deduplicator and the
screen. The campaign layer knows one, :class:`InProcess`, which does the work here, in this
process; the flows hand a round another (``gnomon.flows.fanout.DaskFanOut``, the work cut
into chunks that a Dask cluster's workers compute) through
:class:`~gnomon.campaign.steps.RoundContext`.
Either way the results come back in the same order, so what a round stores does not depend
on where its work ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gnomon.models.ensemble import TTA
from gnomon.models.registry import ModelRegistry
from gnomon.models.screening import ScreenStats, screen_candidates
from gnomon.pipeline.generation.dedup import Deduplicator
from gnomon.pipeline.generation.random_search import RandomSearch
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.templates import Template
from gnomon.storage import Candidate, ModelVersion, Repository


class FanOut(Protocol):
    """The verbs a round fans out; each keeps its generator's side records (SAPS's
    ``skipped`` templates, the random search's ``failures``, the deduplicator's statistics and
    memory) as if it had run in-process."""

    def saps(self, generator: SAPSGenerator, templates: Iterable[Template]) -> Iterator[Candidate]:
        """``generator.generate(templates)``."""
        ...

    def random(self, search: RandomSearch, formulas: Iterable[str]) -> Iterator[Candidate]:
        """``search.generate(formulas)``."""
        ...

    def dedup(self, deduplicator: Deduplicator, candidates: Iterable[Candidate]
              ) -> list[Candidate]:
        """``deduplicator.unique(candidates)``: one chunk's kept candidates, in order."""
        ...

    def screen(self, repo: Repository, candidates: Iterable[Candidate], record: ModelVersion,
               models_dir: str | Path, scheme: str, *, tta: bool = False,
               campaign: str | None = None, round: int | None = None) -> ScreenStats:
        """Predictions of ``record`` for ``candidates``, stored with e_above_hull against the
        stored hull of ``scheme``."""
        ...


@dataclass(frozen=True)
class InProcess:
    """Every verb in this process, as the generators and the screener do it themselves."""

    def saps(self, generator: SAPSGenerator, templates: Iterable[Template]) -> Iterator[Candidate]:
        yield from generator.generate(templates)

    def random(self, search: RandomSearch, formulas: Iterable[str]) -> Iterator[Candidate]:
        yield from search.generate(formulas)

    def dedup(self, deduplicator: Deduplicator, candidates: Iterable[Candidate]
              ) -> list[Candidate]:
        return deduplicator.unique(candidates)

    def screen(self, repo: Repository, candidates: Iterable[Candidate], record: ModelVersion,
               models_dir: str | Path, scheme: str, *, tta: bool = False,
               campaign: str | None = None, round: int | None = None) -> ScreenStats:
        ensemble = ModelRegistry(repo, models_dir).load(record)
        return screen_candidates(repo, candidates, ensemble, record.id, scheme,
                                 tta=TTA() if tta else None, campaign=campaign, round=round)


IN_PROCESS = InProcess()
