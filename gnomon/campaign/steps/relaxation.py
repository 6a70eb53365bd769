"""The ``relax`` and ``ingest`` steps: the campaign's engine relaxes what the round chose, and
every finished relaxation gets its entry on its scheme's hull."""

from __future__ import annotations

from typing import Any

from gnomon.campaign.steps.context import RoundContext, calculation
from gnomon.dft.engine import RelaxEngine
from gnomon.storage import CalcState, Calculation, Candidate, Entry


def relax_with(ctx: RoundContext, candidate_ids: list[str], engine: RelaxEngine) -> dict[str, Any]:
    """Relax ``candidate_ids`` with ``engine`` through the campaign's dispatcher and wait.

    Calculations already stored (a resumed round) are re-attached, never run again."""
    if not candidate_ids:
        return {"calculations": []}
    candidates = list(ctx.repo.query(Candidate, {"id": candidate_ids}))
    service = ctx.relaxations()
    service.submit(candidates, engine, ctx.config.dispatch.name, campaign=ctx.campaign,
                   round=ctx.index)
    service.wait(poll_s=ctx.config.dispatch.poll_interval)
    calcs = [calculation(ctx, cid, engine) for cid in candidate_ids]
    return {
        "calculations": [c.id for c in calcs if c is not None],
        "done": sum(1 for c in calcs if c is not None and c.state is CalcState.done),
        "failed": sum(1 for c in calcs if c is not None and c.state is CalcState.failed),
    }


def ingest_calculations(ctx: RoundContext, calc_ids: list[str]) -> dict[str, Any]:
    """Make sure every finished calculation of ``calc_ids`` has its entry on its hull."""
    calcs = list(ctx.repo.query(Calculation, {"id": calc_ids}))
    missing = [c for c in calcs if c.state is CalcState.done and c.entry_id is None]
    if missing:
        ctx.relaxations().collect(missing)
        calcs = list(ctx.repo.query(Calculation, {"id": calc_ids}))
    entries = [c.entry_id for c in calcs if c.entry_id]
    failed = {c.id: c.failure_reason for c in calcs if c.state is CalcState.failed}
    return {"entries": entries, "failed": failed}


def relax(ctx: RoundContext) -> dict[str, Any]:
    """The campaign's engine relaxes the selection, or with an mlip stage what passed its
    gate."""
    if ctx.config.staged:
        return relax_with(ctx, ctx.outputs("mlip_gate").get("passed", []), ctx.engine)
    return relax_with(ctx, ctx.outputs("select").get("selected", []), ctx.engine)


def ingest(ctx: RoundContext) -> dict[str, Any]:
    """Make sure every finished relaxation of the round has its entry on the hull; with an
    mlip stage each DFT entry records the mlip entry it started from, and the round the path
    candidate -> mlip entry -> dft entry of each."""
    out = ingest_calculations(ctx, ctx.outputs("relax").get("calculations", []))
    if not ctx.config.staged:
        return out
    entries = list(ctx.repo.query(Entry, {"id": out["entries"]}))
    start_ids = [e.candidate_id for e in entries if e.candidate_id]
    starts = {c.id: c for c in ctx.repo.query(Candidate, {"id": start_ids})}
    paths = []
    for e in entries:
        start = starts.get(e.candidate_id)
        if start is None or start.parent_entry_id is None:
            continue
        if e.parent_entry_id != start.parent_entry_id:
            ctx.repo.update_fields("entries", e.id, {"parent_entry_id": start.parent_entry_id})
        paths.append({"candidate": start.parent_candidate_id, "mlip_entry": start.parent_entry_id,
                      "dft_entry": e.id})
    return {**out, "paths": paths}
