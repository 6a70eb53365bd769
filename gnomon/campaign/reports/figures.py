"""The report's figures as PNG: learning curves per round, and the hull diagram.

The curves are drawn on a :class:`matplotlib.figure.Figure` of their own (no pyplot), so
writing a report selects no matplotlib backend and leaves a process's figures alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def _series(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] if r.get(key) is not None else float("nan") for r in rows]


def learning_curves(rows: list[dict[str, Any]], path: Path) -> Path:
    """Hit rate (two tolerances) and MAE on new results, per round, side by side."""
    fig = Figure(figsize=(9, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    xs = [r["round"] for r in rows]
    for key, label in (("hit_rate", "E_hull ≤ 0"), ("hit_rate_25meV", "E_hull ≤ 25 meV")):
        ax1.plot(xs, _series(rows, key), "o-", label=label)
    ax1.set_xlabel("round")
    ax1.set_ylabel("hit rate (vs. hull before round)")
    ax1.set_ylim(-0.05, 1.05)
    ax1.legend()
    ax2.plot(xs, _series(rows, "mae"), "s-", color="C3")
    ax2.set_xlabel("round")
    ax2.set_ylabel("MAE on new results (eV/atom)")
    for ax in (ax1, ax2):
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
