"""A round's generation and screening, in chunks, on the campaign's Dask cluster or in-process.

The steps (``gnomon.campaign.steps``) call these in place of the generators and the screen: with
no ``dask:`` section they run here, as before; with one, the work is cut into chunks
(templates for SAPS, compositions for the random search, candidates for the screen) that
Dask workers compute (:func:`gnomon.flows.distributed.map_chunks`) and that come back in
chunk order. Every chunk is a pure function of its items (SAPS and the random search seed each
work item from the campaign's seed, the screen's model is fixed), so a round's stored result
is the same whichever worker ran a chunk, and whether one died on the way. Storage stays with
the caller: workers never open the database.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from gnomon.config import CampaignConfig, DaskConfig, Settings
from gnomon.pipeline.generation.streaming import chunked
from gnomon.storage import Candidate, ModelVersion, Prediction, Repository

log = logging.getLogger(__name__)


def dask_config(config: CampaignConfig, settings: Settings) -> DaskConfig | None:
    """The campaign's ``dask:`` section, else the site's, else None (work in-process)."""
    return config.dask or settings.dask


def _map(dask: DaskConfig, fn, chunks: Iterable[Any], name: str) -> Iterator[Any]:
    from gnomon.flows.distributed import map_chunks, runtime

    client = runtime(dask).client
    return map_chunks(fn, chunks, client, max_retries=dask.max_retries, name=name,
                      no_worker_timeout=dask.start_timeout)


# -- SAPS -------------------------------------------------------------------------------------
def _saps_chunk(generator: Any, templates: list[Any]) -> tuple[list[Candidate], list[Any]]:
    gen = copy.copy(generator)
    gen.skipped = []
    return list(gen.generate(templates)), gen.skipped


def saps_candidates(dask: DaskConfig | None, generator: Any, templates: Iterable[Any]) -> Iterator[Candidate]:
    """``generator.generate(templates)``, template chunks on the cluster when there is one;
    skipped templates end up in ``generator.skipped`` either way."""
    if dask is None:
        yield from generator.generate(templates)
        return
    clean = copy.copy(generator)
    clean.skipped = []
    for candidates, skipped in _map(dask, partial(_saps_chunk, clean), chunked(templates, dask.chunk_size), "saps"):
        generator.skipped.extend(skipped)
        yield from candidates


# -- random search -----------------------------------------------------------------------------
def _random_chunk(search: Any, formulas: list[str]) -> tuple[list[Candidate], list[str]]:
    s = copy.copy(search)
    s.failures = []
    return list(s.generate(formulas)), s.failures


def random_candidates(dask: DaskConfig | None, search: Any, formulas: Iterable[str]) -> Iterator[Candidate]:
    """``search.generate(formulas)``, composition chunks on the cluster when there is one;
    failures end up in ``search.failures`` either way."""
    if dask is None:
        yield from search.generate(formulas)
        return
    clean = copy.copy(search)
    clean.failures = []
    for candidates, failures in _map(dask, partial(_random_chunk, clean), chunked(formulas, dask.chunk_size), "random"):
        search.failures.extend(failures)
        yield from candidates


# -- screening ---------------------------------------------------------------------------------
_ENSEMBLES: dict[str, Any] = {}


def _ensemble(record: ModelVersion, models_dir: str) -> Any:
    """The ensemble of ``record``, loaded once per worker process."""
    from gnomon.models.registry import ModelRegistry

    key = f"{record.id}:{record.weights_path}"
    if key not in _ENSEMBLES:
        _ENSEMBLES.clear()  # one model a round: keep only the newest in memory
        _ENSEMBLES[key] = ModelRegistry(None, models_dir).load(record)  # type: ignore[arg-type]
    return _ENSEMBLES[key]


def _screen_chunk(record: ModelVersion, models_dir: str, tta: bool,
                  items: list[tuple[str, str, dict]]) -> list[tuple[str, float | None, float | None, str | None]]:
    from gnomon.models.ensemble import TTA
    from gnomon.models.screening import Screener

    ensemble = _ensemble(record, models_dir)
    keyed = [(cid, formula if ensemble.kind == "composition" else structure) for cid, formula, structure in items]
    results = [r for batch in Screener(ensemble, tta=TTA() if tta else None).stream(keyed) for r in batch]
    order = {cid: i for i, (cid, _, _) in enumerate(items)}
    return sorted(((r.key, r.energy_per_atom, r.sigma, r.rejected) for r in results), key=lambda r: order[r[0]])


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
) -> Any:
    """What :func:`gnomon.models.screening.screen_candidates` does, the ensemble running on
    the cluster's workers chunk by chunk; predictions are written here as chunks come back,
    with e_above_hull against the stored hull of ``scheme``."""
    from gnomon.models.screening import ScreenStats, hull_function

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
                id=Prediction.key(cid, record.id), candidate_id=cid, model_version=record.id, scheme=scheme,
                energy_per_atom=energy, sigma=sigma, e_above_hull=ehull(formula, energy),
                campaign=campaign, round=round,
            ))
        stats.written += repo.upsert("predictions", preds) if preds else 0
    return stats
