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
is pulled, and then a checkpoint (``funnel-checkpoint.json`` beside the seen store) records how
far into the stream the round got, how many candidates the seen store held and the counts so
far. A rerun of the step (after a crash) keeps the seen store up to that mark, regenerates the
same seeded stream and skips what the checkpoint covers without deduplicating or screening it
again, and goes on with the counts where they were. Candidates stored after the last checkpoint
(a crash between a chunk's store and its checkpoint) are counted as ``resumed`` and not
screened twice. The step's ``unique`` are all the funnel candidates stored in this round,
whichever run stored them.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson

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


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None


def _write_checkpoint(path: Path, mark: dict[str, Any]) -> None:
    """``mark`` at ``path``, atomically: a crash leaves the old checkpoint or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(mark))
    os.replace(tmp, path)


def resumed_seen_store(seen_path: Path, checkpoint: Path
                       ) -> tuple[SQLiteSeenStore, dict[str, Any] | None]:
    """The seen store of an interrupted run, cut back to its last checkpoint, and the
    checkpoint; else an empty store and None."""
    mark = _read_checkpoint(checkpoint)
    if mark is None or not seen_path.exists():
        checkpoint.unlink(missing_ok=True)
        return fresh_seen_store(seen_path), None
    seen = SQLiteSeenStore(seen_path)
    seen.truncate(mark["seen_row"])
    return seen, mark


class _Counted:
    """An iterator that counts the items it handed out."""

    def __init__(self, items: Iterable[Candidate]) -> None:
        self._it = iter(items)
        self.n = 0

    def __iter__(self) -> Iterator[Candidate]:
        return self

    def __next__(self) -> Candidate:
        item = next(self._it)
        self.n += 1
        return item


def run_funnel(ctx: RoundContext, record: ModelVersion) -> dict[str, Any]:
    """The dedup step of a streaming round screened by ``record`` (see the module docstring);
    returns its outputs."""
    cfg = ctx.config.funnel
    checkpoint = ctx.run_dir / "funnel-checkpoint.json"
    seen, mark = resumed_seen_store(ctx.run_dir / "funnel-seen.db", checkpoint)
    record = _model_it_started_with(ctx, record, mark)
    ensemble = ModelRegistry(ctx.repo, ctx.settings.models_dir).load(record)
    position = mark["position"] if mark else 0
    resumed = mark.get("resumed", 0) if mark else 0
    # stored by an interrupted run after its last checkpoint (the ones before it are in the
    # seen store, and the stream up to the checkpoint is not read again)
    stored_before = {cid for cid in round_candidate_ids(ctx) if cid not in seen}
    screen = HullScreen(ctx.repo, ensemble, record, ctx.scheme, cfg.e_above_hull,
                        tta=TTA() if ctx.config.model.tta else None, campaign=ctx.campaign,
                        round=ctx.index, first_member_margin=cfg.first_member_margin)
    dedup = Deduplicator(repository=ctx.repo, seen=seen, record_duplicates=False)
    funnel = Funnel(dedup, screen=screen, store=screen.store, chunk_size=cfg.chunk_size,
                    counts=FunnelCounts.from_dict(mark["counts"]) if mark else FunnelCounts(),
                    unique=partial(ctx.fan_out.dedup, dedup))
    check = physical_check(ctx)
    stream, info = funnel_sources(ctx, check)
    source = _Counted(itertools.islice(stream, position, cfg.max_generated))
    if position:
        log.info("round %d funnel: resuming after %d candidates of the stream (%d generated "
                 "before)", ctx.index, position, funnel.counts.generated)

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

    def after_chunk(counts: FunnelCounts) -> None:
        _write_checkpoint(checkpoint, {"position": position + source.n, "resumed": resumed,
                                       "seen_row": seen.last_row(), "counts": counts.as_dict(),
                                       "model_version": record.id})
        log.debug("round %d funnel: %d generated, %d duplicates, %d screened, %d passed",
                  ctx.index, counts.generated, counts.duplicates, counts.screened, counts.passed)

    funnel.after_chunk = after_chunk
    try:
        counts = funnel.run(fresh(source))
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
                       "e_above_hull": cfg.e_above_hull, "chunk_size": cfg.chunk_size,
                       "first_member_margin": cfg.first_member_margin,
                       # this run's (a resumed round counts from its restart)
                       "first_member_only": screen.first_member_only}}


def _model_it_started_with(ctx: RoundContext, record: ModelVersion,
                           mark: dict[str, Any] | None) -> ModelVersion:
    """The model an interrupted run of this step screened with, where it is still registered:
    a round resumed after gnomon was upgraded (another shipped model) or after a model was
    registered meanwhile goes on with the screen its first chunks passed, so that one round's
    candidates are judged by one model."""
    version = (mark or {}).get("model_version")
    if not version or version == record.id:
        return record
    earlier = ctx.repo.get(ModelVersion, version)
    if earlier is None:
        log.warning("round %d funnel: the model it started with (%s) is no longer registered; "
                    "going on with %s", ctx.index, version, record.id)
        return record
    log.info("round %d funnel: going on with the model it started with, %s (not %s)",
             ctx.index, version, record.id)
    return earlier


def _summary(counts: FunnelCounts) -> dict[str, Any]:
    out = counts.as_dict()
    for k in ("seconds", "wall"):
        out[k] = {stage: round(v, 3) for stage, v in out[k].items()}
    return out
