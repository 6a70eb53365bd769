"""A round's streaming funnel: generate -> exact dedup -> screen -> store, chunk by chunk.

With ``funnel.enabled`` a round no longer writes every generated candidate to disk and to the
database before screening them (what bounds a round to a few hundred candidates): the dedup
step pulls the generators' lazy streams through :class:`~gnomon.pipeline.generation.funnel.
Funnel`, ``funnel.chunk_size`` candidates at a time, screened by a
:class:`~gnomon.campaign.screens.HullScreen` it hands the funnel. Only the candidates whose
predicted e_above_hull minus one σ is within ``funnel.e_above_hull`` are stored, with their
predictions; of the rest the round keeps the counts (duplicates, screened out, unscreenable
with reasons). Selection then works on the stored ones as in any round: their predictions are
already there, so the screen step only counts them.

Memory is bounded by the chunk: the deduplicator remembers the stream's kept candidates in an
:class:`~gnomon.pipeline.generation.dedup.SQLiteSeenStore` on disk under the round's run folder.

Crash safety: each chunk's passing candidates and predictions are stored before the next chunk
is pulled. A rerun of the step (after a crash) starts a fresh seen store and runs the same
seeded stream again; candidates an interrupted run already stored are counted as ``resumed``
and not screened twice, and the step's ``unique`` are all the funnel candidates stored in this
round, whichever run stored them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from gnomon.campaign.screens import HullScreen
from gnomon.campaign.steps.context import RoundContext, round_candidate_ids
from gnomon.campaign.steps.generators import physical_check, random_source, saps_source
from gnomon.models.ensemble import TTA
from gnomon.models.registry import ModelRegistry
from gnomon.pipeline.generation.dedup import Deduplicator, SQLiteSeenStore
from gnomon.pipeline.generation.funnel import Funnel, FunnelCounts
from gnomon.pipeline.generation.physical import PhysicalCheck
from gnomon.storage import Candidate, ModelVersion

log = logging.getLogger(__name__)


def funnel_sources(ctx: RoundContext, check: PhysicalCheck | None = None
                   ) -> tuple[Iterator[Candidate], dict[str, Any]]:
    """The round's generators chained into one lazy stream (SAPS first, then random search),
    each through the physical ``check`` when given, and a dict that fills with what each
    reports (skipped templates, failures) as it is read."""
    info: dict[str, Any] = {"compositions": []}
    streams: list[Iterable[Candidate]] = []
    if ctx.config.saps.enabled and ctx.config.saps.max_candidates:
        compounds, generator = saps_source(ctx, check)
        streams.append(_then(compounds, lambda: info.__setitem__("skipped_templates",
                                                                 len(generator.skipped))))
    if ctx.config.random_search.enabled and ctx.config.random_search.max_compositions:
        candidates, search, formulas = random_source(ctx, check)
        info["compositions"] = formulas
        streams.append(_then(candidates, lambda: info.__setitem__("random_failures",
                                                                  len(search.failures))))
    return itertools.chain.from_iterable(streams), info


def _then(stream: Iterable[Candidate], done: Callable[[], None]) -> Iterator[Candidate]:
    yield from stream
    done()


def fresh_seen_store(path: Path) -> SQLiteSeenStore:
    """An empty seen store at ``path``: what an interrupted run left there is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    return SQLiteSeenStore(path)


def run_funnel(ctx: RoundContext, record: ModelVersion) -> dict[str, Any]:
    """The dedup step of a streaming round screened by ``record`` (see the module docstring);
    returns its outputs."""
    cfg = ctx.config.funnel
    ensemble = ModelRegistry(ctx.repo, ctx.settings.models_dir).load(record)
    stored_before = round_candidate_ids(ctx)
    seen = fresh_seen_store(ctx.run_dir / "funnel-seen.db")
    screen = HullScreen(ctx.repo, ensemble, record, ctx.scheme, cfg.e_above_hull,
                        tta=TTA() if ctx.config.model.tta else None, campaign=ctx.campaign,
                        round=ctx.index)
    funnel = Funnel(Deduplicator(repository=ctx.repo, seen=seen, record_duplicates=False),
                    screen=screen, store=screen.store, chunk_size=cfg.chunk_size)
    check = physical_check(ctx)
    stream, info = funnel_sources(ctx, check)
    resumed = 0

    def fresh(candidates: Iterable[Candidate]) -> Iterator[Candidate]:
        nonlocal resumed
        for c in candidates:
            if c.id in stored_before:  # stored by an interrupted run of this step
                resumed += 1
                continue
            if (cfg.max_passed is not None
                    and funnel.counts.passed + len(stored_before) >= cfg.max_passed):
                return
            yield c

    try:
        counts = funnel.run(fresh(itertools.islice(stream, cfg.max_generated)))
    finally:
        seen.close()
    if check is not None:
        info["physical"] = check.counts()
    unique = sorted(round_candidate_ids(ctx))
    log.info("round %d funnel: %d generated, %d duplicates, %d screened, %d passed "
             "(e_above_hull - sigma <= %.3f), %d unscreenable; %d stored in all", ctx.index,
             counts.generated, counts.duplicates, counts.screened, counts.passed,
             cfg.e_above_hull, counts.unscreenable, len(unique))
    return {"generated": counts.generated + resumed, "unique": unique,
            "funnel": {**_summary(counts), **info, "resumed": resumed, "model_version": record.id,
                       "e_above_hull": cfg.e_above_hull, "chunk_size": cfg.chunk_size}}


def _summary(counts: FunnelCounts) -> dict[str, Any]:
    out = counts.as_dict()
    out["seconds"] = {k: round(v, 3) for k, v in out["seconds"].items()}
    return out
