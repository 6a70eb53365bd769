"""A round's streaming funnel: generate -> exact dedup -> screen -> store, chunk by chunk.

With ``funnel.enabled`` a round no longer writes every generated candidate to disk and to the
database before screening them (what bounds a round to a few hundred candidates): the dedup
step pulls the generators' lazy streams through :class:`~gnomon.pipeline.generation.funnel.
Funnel`, ``funnel.chunk_size`` candidates at a time. Only the candidates whose predicted
e_above_hull minus one σ is within ``funnel.e_above_hull`` are stored, with their predictions;
of the rest the round keeps the counts (duplicates, screened out, unscreenable with reasons).
Selection then works on the stored ones as in any round: their predictions are already there,
so the screen step only counts them.

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
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from gnomon.pipeline.generation.funnel import Funnel, FunnelCounts, Verdict
from gnomon.storage import Candidate, ModelVersion, Prediction, Repository

log = logging.getLogger(__name__)


class HullScreen:
    """The funnel's screen against the scheme's stored hull: a verdict per candidate, and the
    predictions of the ones that pass, stored together with them (:meth:`store`)."""

    def __init__(self, repo: Repository, ensemble: Any, record: ModelVersion, scheme: str,
                 e_above_hull: float, *, tta: Any = None, campaign: str | None = None,
                 round: int | None = None) -> None:
        from gnomon.models.screening import Screener, hull_function

        self.repo = repo
        self.ensemble = ensemble
        self.record = record
        self.scheme = scheme
        self.threshold = e_above_hull
        self.campaign = campaign
        self.round = round
        self._screener = Screener(ensemble, tta=tta)
        self._ehull = hull_function(repo, scheme)
        self._pending: dict[str, Prediction] = {}

    def __call__(self, chunk: Sequence[Candidate]) -> list[Verdict]:
        verdicts: list[Verdict] = ["not predicted"] * len(chunk)
        self._pending.clear()  # what did not pass in the last chunk is never stored
        composition = self.ensemble.kind == "composition"
        items = ((i, c.formula if composition else c.structure) for i, c in enumerate(chunk))
        for results in self._screener.stream(items):
            for r in results:
                if r.rejected is not None:
                    verdicts[r.key] = r.rejected
                    continue
                c = chunk[r.key]
                e_hull = self._ehull(c.formula, r.energy_per_atom)
                if e_hull is None:
                    verdicts[r.key] = f"no {self.scheme} hull for {c.chemsys}"
                    continue
                passes = e_hull - (r.sigma or 0.0) <= self.threshold
                verdicts[r.key] = passes
                if passes:
                    self._pending[c.id] = Prediction(
                        id=Prediction.key(c.id, self.record.id), candidate_id=c.id,
                        model_version=self.record.id, scheme=self.scheme,
                        energy_per_atom=r.energy_per_atom, sigma=r.sigma, e_above_hull=e_hull,
                        campaign=self.campaign, round=self.round)
        return verdicts

    def store(self, passing: list[Candidate]) -> None:
        """The chunk's passing candidates, then their predictions: a crash between the two
        leaves candidates without predictions, which the round's screen step predicts."""
        self.repo.add_candidates(passing)
        self.repo.upsert("predictions", [self._pending.pop(c.id) for c in passing])


def funnel_sources(ctx: Any) -> tuple[Iterator[Candidate], dict[str, Any]]:
    """The round's generators chained into one lazy stream (SAPS first, then random search),
    and a dict that fills with what each reports (skipped templates, failures) as it is read."""
    from gnomon.campaign.steps import random_source, saps_source

    info: dict[str, Any] = {"compositions": []}
    streams: list[Iterable[Candidate]] = []
    if ctx.config.saps.enabled and ctx.config.saps.max_candidates:
        compounds, generator = saps_source(ctx)
        streams.append(_then(compounds, lambda: info.__setitem__("skipped_templates", len(generator.skipped))))
    if ctx.config.random_search.enabled and ctx.config.random_search.max_compositions:
        candidates, search, formulas = random_source(ctx)
        info["compositions"] = formulas
        streams.append(_then(candidates, lambda: info.__setitem__("random_failures", len(search.failures))))
    return itertools.chain.from_iterable(streams), info


def _then(stream: Iterable[Candidate], done) -> Iterator[Candidate]:
    yield from stream
    done()


def run_funnel(ctx: Any, record: ModelVersion) -> dict[str, Any]:
    """The dedup step of a streaming round screened by ``record`` (see the module docstring);
    returns its outputs."""
    from gnomon.campaign.steps import round_candidate_ids
    from gnomon.models.ensemble import TTA
    from gnomon.models.registry import ModelRegistry
    from gnomon.pipeline.generation.dedup import Deduplicator, SQLiteSeenStore

    cfg = ctx.config.funnel
    ensemble = ModelRegistry(ctx.repo, ctx.settings.models_dir).load(record)
    stored_before = round_candidate_ids(ctx)
    seen_path = ctx.run_dir / "funnel-seen.db"
    seen_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in seen_path.parent.glob(seen_path.name + "*"):  # an interrupted run's: start afresh
        stale.unlink()
    seen = SQLiteSeenStore(seen_path)
    screen = HullScreen(ctx.repo, ensemble, record, ctx.scheme, cfg.e_above_hull,
                        tta=TTA() if ctx.config.model.tta else None, campaign=ctx.campaign, round=ctx.index)
    funnel = Funnel(Deduplicator(repository=ctx.repo, seen=seen, record_duplicates=False),
                    screen=screen, store=screen.store, chunk_size=cfg.chunk_size)
    stream, info = funnel_sources(ctx)
    resumed = 0

    def fresh(candidates: Iterable[Candidate]) -> Iterator[Candidate]:
        nonlocal resumed
        for c in candidates:
            if c.id in stored_before:  # stored by an interrupted run of this step
                resumed += 1
                continue
            if cfg.max_passed is not None and funnel.counts.passed + len(stored_before) >= cfg.max_passed:
                return
            yield c

    try:
        counts = funnel.run(fresh(itertools.islice(stream, cfg.max_generated)))
    finally:
        seen.close()
    unique = sorted(round_candidate_ids(ctx))
    log.info("round %d funnel: %d generated, %d duplicates, %d screened, %d passed (e_above_hull - "
             "sigma <= %.3f), %d unscreenable; %d stored in all", ctx.index, counts.generated,
             counts.duplicates, counts.screened, counts.passed, cfg.e_above_hull, counts.unscreenable,
             len(unique))
    return {"generated": counts.generated + resumed, "unique": unique,
            "funnel": {**_summary(counts), **info, "resumed": resumed, "model_version": record.id,
                       "e_above_hull": cfg.e_above_hull, "chunk_size": cfg.chunk_size}}


def _summary(counts: FunnelCounts) -> dict[str, Any]:
    out = counts.as_dict()
    out["seconds"] = {k: round(v, 3) for k, v in out["seconds"].items()}
    return out
