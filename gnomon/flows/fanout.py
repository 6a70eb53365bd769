"""A round's generation, exact dedup and screening, in chunks, on the campaign's Dask cluster.

The steps (``gnomon.campaign.steps``) call their round's fan-out
(:class:`gnomon.campaign.fanout.FanOut`) in place of the generators, the deduplicator and the
screen; the flow hands them :func:`fan_out`'s choice. With no ``dask:`` section that is the
campaign layer's in-process one; with one it is a :class:`DaskFanOut`: the work is cut into
chunks (templates for SAPS, compositions for the random search, whole dedup buckets for exact
dedup, candidates for the screen) that Dask workers compute
(:func:`gnomon.flows.distributed.map_chunks`) and that come back in chunk order. Every chunk is
a pure function of its items (SAPS and the random search seed each work item from the
campaign's seed, a dedup bucket carries its stored and remembered members, the screen's model
is fixed), so a round's stored result is the same whichever worker ran a chunk, and whether one
died on the way. Storage stays with the caller: workers never open the database.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from gnomon.campaign.fanout import IN_PROCESS, FanOut
from gnomon.config import CampaignConfig, DaskConfig, Settings
from gnomon.flows.distributed import map_chunks, runtime
from gnomon.models.ensemble import TTA, Ensemble
from gnomon.models.registry import ModelRegistry
from gnomon.models.screening import Screener, ScreenStats, hull_function
from gnomon.pipeline.generation.dedup import BucketJob, Deduplicator, decide_buckets
from gnomon.pipeline.generation.random_search import RandomSearch
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.streaming import chunked
from gnomon.pipeline.generation.templates import Template
from gnomon.storage import Candidate, ModelVersion, Prediction, Repository

log = logging.getLogger(__name__)


def dask_config(config: CampaignConfig, settings: Settings) -> DaskConfig | None:
    """The campaign's ``dask:`` section, else the site's, else None (work in-process)."""
    return config.dask or settings.dask


def _map(dask: DaskConfig, fn, chunks: Iterable[Any], name: str) -> Iterator[Any]:
    client = runtime(dask).client
    return map_chunks(fn, chunks, client, max_retries=dask.max_retries, name=name,
                      no_worker_timeout=dask.start_timeout)


# -- SAPS -------------------------------------------------------------------------------------
def _saps_chunk(generator: SAPSGenerator,
                templates: list[Template]) -> tuple[list[Candidate], list[Any]]:
    gen = copy.copy(generator)
    gen.skipped = []
    return list(gen.generate(templates)), gen.skipped


def saps_candidates(dask: DaskConfig, generator: SAPSGenerator,
                    templates: Iterable[Template]) -> Iterator[Candidate]:
    """``generator.generate(templates)``, template chunks on the cluster; skipped templates
    end up in ``generator.skipped`` as in-process."""
    clean = copy.copy(generator)
    clean.skipped = []
    chunks = chunked(templates, dask.chunk_size)
    for candidates, skipped in _map(dask, partial(_saps_chunk, clean), chunks, "saps"):
        generator.skipped.extend(skipped)
        yield from candidates


# -- random search -----------------------------------------------------------------------------
def _random_chunk(search: RandomSearch, formulas: list[str]) -> tuple[list[Candidate], list[str]]:
    s = copy.copy(search)
    s.failures = []
    return list(s.generate(formulas)), s.failures


def random_candidates(dask: DaskConfig, search: RandomSearch,
                      formulas: Iterable[str]) -> Iterator[Candidate]:
    """``search.generate(formulas)``, composition chunks on the cluster; failures end up in
    ``search.failures`` as in-process."""
    clean = copy.copy(search)
    clean.failures = []
    chunks = chunked(formulas, dask.chunk_size)
    for candidates, failures in _map(dask, partial(_random_chunk, clean), chunks, "random"):
        search.failures.extend(failures)
        yield from candidates


# -- exact dedup -------------------------------------------------------------------------------
def bucket_chunks(jobs: list[BucketJob], size: int) -> Iterator[list[BucketJob]]:
    """Whole bucket jobs, in order, packed into chunks of about ``size`` candidates (a bucket
    larger than ``size`` is a chunk of its own: it is never split)."""
    chunk: list[BucketJob] = []
    n = 0
    for job in jobs:
        chunk.append(job)
        n += len(job.candidates)
        if n >= size:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


def dedup_on_cluster(dask: DaskConfig, deduplicator: Deduplicator,
                     candidates: Iterable[Candidate]) -> list[Candidate]:
    """``deduplicator.unique(candidates)``, its buckets decided on the cluster's workers: the
    same kept candidates in the same order, the same statistics of duplicates and the same
    memory of the stream. Chunks are whole buckets, at most ``dask.dedup_chunk_size``
    candidates unless a bucket is larger, and at least four per worker where the chunk allows;
    the bucket members they need are read here, from the repository and the stream's memory."""
    plan = deduplicator.plan(candidates)
    if not plan.jobs:
        return []
    size = min(dask.dedup_chunk_size, math.ceil(len(plan.chunk) / (4 * dask.workers)))
    fn = partial(decide_buckets, **deduplicator.tolerances)
    verdicts = [v for chunk in _map(dask, fn, bucket_chunks(plan.jobs, size), "dedup")
                for v in chunk]
    return deduplicator.apply(plan, verdicts)


# -- screening ---------------------------------------------------------------------------------
_ENSEMBLES: dict[str, Ensemble] = {}

#: what a worker sends back per candidate: id, energy per atom, sigma, rejection reason
ChunkResult = tuple[str, float | None, float | None, str | None]


def _ensemble(record: ModelVersion, models_dir: str) -> Ensemble:
    """The ensemble of ``record``, loaded once per worker process."""
    key = f"{record.id}:{record.weights_path}"
    if key not in _ENSEMBLES:
        _ENSEMBLES.clear()  # one model a round: keep only the newest in memory
        _ENSEMBLES[key] = ModelRegistry(None, models_dir).load(record)  # type: ignore[arg-type]
    return _ENSEMBLES[key]


def _screen_chunk(record: ModelVersion, models_dir: str, tta: bool,
                  items: list[tuple[str, str, dict]]) -> list[ChunkResult]:
    ensemble = _ensemble(record, models_dir)
    composition = ensemble.kind == "composition"
    keyed = [(cid, formula if composition else structure) for cid, formula, structure in items]
    screener = Screener(ensemble, tta=TTA() if tta else None)
    results = [r for batch in screener.stream(keyed) for r in batch]
    order = {cid: i for i, (cid, _, _) in enumerate(items)}
    return sorted(((r.key, r.energy_per_atom, r.sigma, r.rejected) for r in results),
                  key=lambda r: order[r[0]])


def screen_on_cluster(
    dask: DaskConfig,
    repo: Repository,
    candidates: Iterable[Candidate],
    record: ModelVersion,
    models_dir: str | Path,
    scheme: str,
    *,
    tta: bool = False,
    campaign: str | None = None,
    round: int | None = None,
) -> ScreenStats:
    """What :func:`gnomon.models.screening.screen_candidates` does, the ensemble running on
    the cluster's workers chunk by chunk; predictions are written here as chunks come back,
    with e_above_hull against the stored hull of ``scheme``."""
    stats = ScreenStats()
    ehull = hull_function(repo, scheme)
    formulas: dict[str, str] = {}

    def items() -> Iterator[tuple[str, str, dict]]:
        for c in candidates:
            formulas[c.id] = c.formula
            yield c.id, c.formula, c.structure

    fn = partial(_screen_chunk, record, str(models_dir), tta)
    for results in _map(dask, fn, chunked(items(), dask.screen_chunk_size), "screen"):
        preds = []
        for cid, energy, sigma, rejected in results:
            formula = formulas.pop(cid, "")
            if rejected is not None:
                stats.rejected += 1
                stats.reasons[rejected] = stats.reasons.get(rejected, 0) + 1
                log.info("candidate %s not screened: %s", cid, rejected)
                continue
            stats.screened += 1
            preds.append(Prediction(
                id=Prediction.key(cid, record.id), candidate_id=cid, model_version=record.id,
                scheme=scheme, energy_per_atom=energy, sigma=sigma,
                e_above_hull=ehull(formula, energy), campaign=campaign, round=round,
            ))
        stats.written += repo.upsert("predictions", preds) if preds else 0
    return stats


# -- the fan-out a flow hands its round ----------------------------------------------------------
@dataclass(frozen=True)
class DaskFanOut:
    """A round's SAPS, random search, exact dedup and screen in chunks on the cluster of
    ``dask``."""

    dask: DaskConfig

    def saps(self, generator: SAPSGenerator, templates: Iterable[Template]) -> Iterator[Candidate]:
        return saps_candidates(self.dask, generator, templates)

    def random(self, search: RandomSearch, formulas: Iterable[str]) -> Iterator[Candidate]:
        return random_candidates(self.dask, search, formulas)

    def dedup(self, deduplicator: Deduplicator, candidates: Iterable[Candidate]
              ) -> list[Candidate]:
        return dedup_on_cluster(self.dask, deduplicator, candidates)

    def screen(self, repo: Repository, candidates: Iterable[Candidate], record: ModelVersion,
               models_dir: str | Path, scheme: str, *, tta: bool = False,
               campaign: str | None = None, round: int | None = None) -> ScreenStats:
        return screen_on_cluster(self.dask, repo, candidates, record, models_dir, scheme,
                                 tta=tta, campaign=campaign, round=round)


def fan_out(config: CampaignConfig, settings: Settings) -> FanOut:
    """Where a round of ``config`` runs its heavy work: on the Dask cluster its ``dask:``
    section (or the site's) names, else in-process."""
    dask = dask_config(config, settings)
    return IN_PROCESS if dask is None else DaskFanOut(dask)
