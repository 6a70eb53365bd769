"""The per-system part of a campaign report: what each chemical system got and gave.

Rounds store their counts per system (``metrics["by_system"]``, written by the metrics
step); this sums them over the campaign's rounds and adds, per system, the stable phases on
the hull now that the campaign found (not references, not shipped known phases).
"""

from __future__ import annotations

from collections import Counter

from gnomon.campaign.reports.tables import markdown_table
from gnomon.config import CampaignConfig
from gnomon.pipeline.thermo.known import phase_origins
from gnomon.pipeline.thermo.phase_query import PhaseQuery
from gnomon.plural import counted
from gnomon.storage import Repository, Round

COLUMNS = ("candidates", "selected", "relaxed", "hits", "new_stable", "stable_found")
HEADERS = ("system", "candidates", "selected", "relaxed", "hits", "new stable (at its round)",
           "stable found (now)")


def system_rows(repo: Repository, config: CampaignConfig, scheme: str) -> dict[str, dict[str, int]]:
    """Per chemical system: the campaign's summed round counts and its stable phases found."""
    totals: dict[str, Counter[str]] = {}
    for r in repo.query(Round, {"campaign": config.name}):
        for system, row in (r.metrics or {}).get("by_system", {}).items():
            totals.setdefault(system, Counter()).update({k: int(v) for k, v in row.items()})
    stable = PhaseQuery(chemsys=config.chemsys, scheme=scheme, stable=True).run(repo)
    for row, origin in zip(stable, phase_origins(repo, stable), strict=True):
        if origin == "campaign":
            totals.setdefault(row["chemsys"], Counter())["stable_found"] += 1
    order = sorted(totals, key=lambda s: (s.count("-"), s))  # binaries first, then by name
    return {s: {k: int(totals[s][k]) for k in COLUMNS} for s in order}


def system_section(repo: Repository, config: CampaignConfig, scheme: str) -> list[str]:
    """Markdown lines of the report's per-system table (none before a round has counts)."""
    rows = system_rows(repo, config, scheme)
    if not rows:
        return []
    explored = len(config.systems)
    touched = sum(1 for row in rows.values() if row["candidates"])
    scope = (f" (every sub-system of {config.max_arity} or fewer elements)."
             if config.max_arity else ".")
    table = [[system, *(row[k] for k in COLUMNS)] for system, row in rows.items()]
    return ["## Chemical systems", "",
            f"{touched} of the {counted(explored, 'system')} explored "
            f"{'has' if touched == 1 else 'have'} candidates{scope}", "",
            *markdown_table(HEADERS, table), ""]
