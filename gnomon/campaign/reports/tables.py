"""A campaign's per-round figures as rows and Markdown table cells: what the report, the CLI
(``gnomon campaign show``) and the web explorer tabulate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gnomon.storage import Repository, Round

#: (metric key, column header) of the per-round table, in order
METRIC_COLUMNS = (
    ("round", "round"), ("policy", "policy"), ("generated", "generated"), ("unique", "unique"),
    ("screened", "screened"), ("passed_screen", "passed screen"), ("selected", "selected"),
    ("relaxed", "relaxed"), ("failed", "failed"), ("hit_rate", "hit rate"),
    ("hit_rate_25meV", "hit rate (25 meV)"), ("new_stable", "new stable"),
    ("mae", "MAE (eV/atom)"), ("sigma_coverage_1", "±1σ coverage"),
)


def format_value(value: Any) -> str:
    """A table cell: floats to three decimals, a missing value as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def campaign_rounds(repo: Repository, campaign: str) -> list[Round]:
    """The campaign's stored rounds, in order."""
    return sorted(repo.query(Round, {"campaign": campaign}), key=lambda r: r.index)


def metric_rows(repo: Repository, campaign: str) -> list[dict[str, Any]]:
    """One row per round that has metrics: ``{"round": index, **metrics}``."""
    return [{"round": r.index, **r.metrics} for r in campaign_rounds(repo, campaign) if r.metrics]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Markdown lines of a table: the header, its rule, one line per row of formatted cells."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in rows]
    return lines
