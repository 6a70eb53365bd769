"""The explorer's figures as SVG, drawn on the server with matplotlib.

The hull diagram is the one `gnomon hull --plot` draws (gnomon.pipeline.thermo.plots: every
phase, the unstable ones coloured and labelled by their energy above the hull, no label over
another), written as SVG; the per-round curves show what `gnomon campaign report` tabulates.
Pages embed them as ``<img>``, so nothing in a figure can run in the page. Drawing is
serialised: matplotlib's text and font caches are shared by every thread.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from gnomon.pipeline.thermo.plots import hull_figure

_DRAWING = threading.Lock()
_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "gnomon"}  # text stays text; stable ids

COUNT_KEYS = (("generated", "generated"), ("unique", "unique"), ("screened", "screened"),
              ("selected", "selected"), ("relaxed", "relaxed"), ("new_stable", "new stable"))


def hull_svg(pd, scheme: str | None = None) -> str:
    """The hull diagram of a PhaseDiagram (2 to 4 elements) in ``scheme`` as SVG text."""
    with _DRAWING, matplotlib.rc_context(_STYLE):
        buf = io.StringIO()
        hull_figure(pd, scheme).savefig(buf, format="svg", bbox_inches="tight")
        return buf.getvalue()


def _series(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) if r.get(key) is not None else float("nan") for r in rows]


def metrics_svg(rows: list[dict[str, Any]], campaign: str) -> str:
    """Hit rate, model error and counts per round, three panels side by side."""
    with _DRAWING, matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(11, 3.2))
        ax1, ax2, ax3 = fig.subplots(1, 3)
        xs = [r["round"] for r in rows]
        for key, label in (("hit_rate", "E_hull ≤ 0"), ("hit_rate_25meV", "E_hull ≤ 25 meV")):
            ax1.plot(xs, _series(rows, key), "o-", label=label)
        ax1.set_ylabel("hit rate (vs. hull before round)")
        ax1.set_ylim(-0.05, 1.05)
        ax1.legend(fontsize=8)
        ax2.plot(xs, _series(rows, "mae"), "s-", color="C3")
        ax2.set_ylabel("MAE on new results (eV/atom)")
        for key, label in COUNT_KEYS:
            if any(r.get(key) is not None for r in rows):
                ax3.plot(xs, _series(rows, key), "o-", label=label)
        ax3.set_ylabel("count")
        if ax3.lines:
            ax3.legend(fontsize=7)
        for ax in (ax1, ax2, ax3):
            ax.set_xlabel("round")
            ax.set_xticks(xs)
            ax.grid(alpha=0.3)
        fig.suptitle(f"campaign {campaign}", fontsize=10)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        return buf.getvalue()


class SvgCache:
    """A few recently drawn figures, keyed by what they were drawn from."""

    def __init__(self, size: int = 64):
        self.size = size
        self._items: OrderedDict[tuple, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> str | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: tuple, svg: str) -> str:
        with self._lock:
            self._items[key] = svg
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return svg
