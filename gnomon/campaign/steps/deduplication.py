"""The ``dedup`` step: the round's unique candidates, stored; or, in a streaming round, the
funnel that generates, deduplicates and screens in one pass (:mod:`.funnel`). Either way the
deduplicator runs through the round's fan-out (in-process, or its buckets on a cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gnomon.campaign.steps.context import RoundContext, round_candidate_ids
from gnomon.campaign.steps.funnel import run_funnel
from gnomon.campaign.steps.screening import streaming_model
from gnomon.pipeline.generation.candidate_io import read_candidates
from gnomon.pipeline.generation.dedup import Deduplicator
from gnomon.pipeline.generation.streaming import chunked
from gnomon.storage import Candidate

CHUNK = 500  # candidates read, deduplicated and stored at a time


def dedup(ctx: RoundContext) -> dict[str, Any]:
    """Unique candidates of the round, stored; duplicates of the batch or the database dropped.
    With the streaming funnel: generated, deduplicated and screened here, chunk by chunk, and
    only the candidates that pass stored (``gnomon.campaign.steps.funnel``)."""
    record = streaming_model(ctx)
    if record is not None:
        return run_funnel(ctx, record)
    files = [v["file"] for v in ctx.outputs("generate").values()
             if isinstance(v, dict) and v.get("file")]
    already = round_candidate_ids(ctx)
    deduper = Deduplicator(repository=ctx.repo)
    unique: list[str] = []
    seen = 0
    for chunk in chunked(_read_all(files), CHUNK):
        seen += len(chunk)
        kept_before = [c.id for c in chunk if c.id in already]  # stored by an interrupted run
        fresh = ctx.fan_out.dedup(deduper, [c for c in chunk if c.id not in already])
        ctx.repo.add_candidates(fresh)
        unique.extend(kept_before + [c.id for c in fresh])
    unique = list(dict.fromkeys(unique))
    return {"generated": seen, "unique": unique}


def _read_all(files: list[str]) -> Iterator[Candidate]:
    for f in files:
        yield from read_candidates(f)
