"""The ``metrics`` step: the round measured against the hull as it stood before it."""

from __future__ import annotations

from typing import Any

from gnomon.campaign.steps.context import RoundContext
from gnomon.campaign.systems import system_breakdown
from gnomon.pipeline.thermo.metrics import round_metrics
from gnomon.storage import Candidate, Entry, Prediction


def metrics(ctx: RoundContext) -> dict[str, Any]:
    """Per-round metrics against the hull as it stood before the round (stored on the Round).

    The hull itself is kept current by ``ingest``; this step only measures the round."""
    out = ctx.round().outputs
    entries = list(ctx.repo.query(Entry, {"id": out.get("ingest", {}).get("entries", [])}))
    version = out.get("screen", {}).get("model_version")
    funnel = out.get("dedup", {}).get("funnel")
    predictions = screened_predictions(ctx, entries, version)
    result = round_metrics(ctx.repo, ctx.scheme, entries, predictions, funnel_counts(out),
                           len(out.get("ingest", {}).get("failed", {})))
    result["policy"] = out.get("select", {}).get("policy")
    result["model_version"] = version
    if funnel:
        result["passed_screen"] = len(out["dedup"]["unique"])
    result["by_system"] = system_breakdown(ctx.repo, ctx.scheme,
                                           out.get("dedup", {}).get("unique", []),
                                           out.get("select", {}).get("selected", []), entries)
    if ctx.config.staged:
        result["stages"] = stage_metrics(ctx, out, result)
    ctx.repo.update_fields("rounds", ctx.round_id, {"metrics": result})
    return result


def screened_predictions(ctx: RoundContext, entries: list[Entry],
                         version: str | None) -> dict[str, Prediction]:
    """The screen's prediction for each entry's candidate, keyed by that candidate.

    A DFT entry of a staged round started from an ML-relaxed structure: the screen judged the
    candidate that structure came from."""
    if not version:
        return {}
    screened_as = {e.candidate_id: e.candidate_id for e in entries if e.candidate_id}
    if ctx.config.staged:
        for c in ctx.repo.query(Candidate, {"id": list(screened_as)}):
            if c.parent_candidate_id:
                screened_as[c.id] = c.parent_candidate_id
    by_parent = ctx.repo.predictions_for(list(set(screened_as.values())), version)
    return {cid: by_parent[p] for cid, p in screened_as.items() if p in by_parent}


def funnel_counts(out: dict[str, Any]) -> dict[str, int]:
    """How many candidates the round generated, kept unique, screened and selected."""
    counts = {
        "generated": out.get("dedup", {}).get("generated", 0),
        "unique": len(out.get("dedup", {}).get("unique", [])),
        "screened": out.get("screen", {}).get("screened", 0),
        "selected": len(out.get("select", {}).get("selected", [])),
    }
    funnel = out.get("dedup", {}).get("funnel")
    if funnel:  # a streaming round stored only what passed: unique and screened from its counts
        counts["unique"] = funnel["generated"] - funnel["duplicates"] + funnel.get("resumed", 0)
        counts["screened"] = funnel["screened"] + funnel.get("resumed", 0)
    return counts


def stage_metrics(ctx: RoundContext, out: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """Counts and hit rates per fidelity stage of a staged round.

    mlip: relaxed, failed, hit rate against its own hull before the round, and how many went
    on to dft (``passed``; ``pass_rate`` of those relaxed); dft: calls, relaxed, failed, hit
    rate and new stable phases (the round's headline figures), and ``stable_share``: the share
    of DFT calls that ended on the DFT hull, the figure an mlip stage exists to raise.
    """
    mlip_out = out.get("mlip_ingest", {})
    mlip_entries = list(ctx.repo.query(Entry, {"id": mlip_out.get("entries", [])}))
    mlip = round_metrics(ctx.repo, ctx.mlip_engine.scheme, mlip_entries, {}, {},
                         len(mlip_out.get("failed", {})))
    passed = len(out.get("mlip_gate", {}).get("passed", []))
    dft_calls = len(out.get("relax", {}).get("calculations", []))
    return {
        "screen": {"screened": final.get("screened", 0), "selected": final.get("selected", 0)},
        "mlip": {"scheme": ctx.mlip_engine.scheme, "relaxed": mlip["relaxed"],
                 "failed": mlip["failed"], "hit_rate": mlip["hit_rate"],
                 "new_stable": mlip["new_stable"], "passed": passed,
                 "threshold": ctx.config.mlip_e_above_hull,
                 "pass_rate": passed / mlip["relaxed"] if mlip["relaxed"] else None},
        "dft": {"scheme": ctx.scheme, "calls": dft_calls, "relaxed": final["relaxed"],
                "failed": final["failed"], "hit_rate": final["hit_rate"],
                "new_stable": final["new_stable"],
                "stable_share": final["new_stable"] / dft_calls if dft_calls else None},
    }
