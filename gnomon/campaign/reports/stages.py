"""The report's account of a staged campaign (screen -> mlip -> dft): what each stage took in
and let through per round, and the path of every phase found (candidate -> mlip entry -> dft
entry). A single-stage campaign gets no section."""

from __future__ import annotations

from typing import Any

from gnomon.campaign.reports.tables import markdown_table
from gnomon.config import CampaignConfig
from gnomon.storage import Candidate, Entry, Phase, Repository, Round

STAGE_COLUMNS = (
    ("round", "round"), ("selected", "selected"), ("mlip_relaxed", "mlip relaxed"),
    ("mlip_hit_rate", "mlip hit rate"), ("passed", "within gate"), ("pass_rate", "pass rate"),
    ("dft_calls", "dft calls"), ("dft_hit_rate", "dft hit rate"),
    ("dft_new_stable", "dft new stable"), ("stable_share", "stable / dft call"),
)
PATH_HEADERS = ("formula", "candidate", "mlip entry", "mlip E_hull (eV/atom)", "dft entry")


def stage_rows(rounds: list[Round]) -> list[dict[str, Any]]:
    """One row per round that has per-stage metrics (``metrics["stages"]``)."""
    rows = []
    for r in rounds:
        st = r.metrics.get("stages")
        if not st:
            continue
        mlip, dft = st.get("mlip", {}), st.get("dft", {})
        rows.append({"round": r.index, "selected": st.get("screen", {}).get("selected"),
                     "mlip_relaxed": mlip.get("relaxed"), "mlip_hit_rate": mlip.get("hit_rate"),
                     "passed": mlip.get("passed"), "pass_rate": mlip.get("pass_rate"),
                     "dft_calls": dft.get("calls"), "dft_hit_rate": dft.get("hit_rate"),
                     "dft_new_stable": dft.get("new_stable"),
                     "stable_share": dft.get("stable_share")})
    return rows


def discovery_paths(repo: Repository, entry_ids: list[str]) -> list[dict[str, Any]]:
    """For each DFT entry that started from an earlier stage's structure: its formula, the
    candidate screened, the mlip entry (with its e_above_hull on the mlip hull) and itself."""
    entries = {e.id: e for e in repo.query(Entry, {"id": entry_ids}) if e.parent_entry_id}
    if not entries:
        return []
    mlip_ids = [e.parent_entry_id for e in entries.values()]
    mlip_phases = {p.id: p for p in repo.query(Phase, {"id": mlip_ids})}
    start_ids = [e.candidate_id for e in entries.values()]
    starts = {c.id: c for c in repo.query(Candidate, {"id": start_ids})}
    out = []
    for eid in entry_ids:
        e = entries.get(eid)
        if e is None:
            continue
        start = starts.get(e.candidate_id)
        phase = mlip_phases.get(e.parent_entry_id)
        out.append({"formula": e.reduced_formula,
                    "candidate": start.parent_candidate_id if start else None,
                    "mlip_entry": e.parent_entry_id,
                    "mlip_e_above_hull": phase.e_above_hull if phase else None,
                    "dft_entry": e.id})
    return out


def stage_section(repo: Repository, config: CampaignConfig, rounds: list[Round],
                  found_ids: list[str]) -> list[str]:
    """Markdown lines: the per-stage table and the paths of the phases found (``found_ids``:
    entry ids of the stable phases this campaign found)."""
    if not config.staged:
        return []
    schemes = {r.metrics["stages"]["mlip"].get("scheme") for r in rounds
               if r.metrics.get("stages")}
    named = ", ".join(f"`{s}`" for s in sorted(filter(None, schemes)))
    table = [[row.get(k) for k, _ in STAGE_COLUMNS] for row in stage_rows(rounds)]
    lines = ["## Stages", "",
             f"screen → mlip (`{config.mlip_engine.name}`, scheme {named}) "
             f"→ dft (`{config.engine.name}`); only mlip results within "
             f"{config.mlip_e_above_hull} eV/atom of the mlip hull go on, each from its "
             "ML-relaxed structure. Hit rates are against each scheme's own hull before the "
             "round.", "",
             *markdown_table([h for _, h in STAGE_COLUMNS], table), ""]
    paths = discovery_paths(repo, found_ids)
    if paths:
        table = [[p["formula"], str(p["candidate"]), p["mlip_entry"], p["mlip_e_above_hull"],
                  p["dft_entry"]] for p in paths]
        lines += ["Paths of the phases found (candidate → mlip entry → dft entry):", "",
                  *markdown_table(PATH_HEADERS, table), ""]
    return lines
