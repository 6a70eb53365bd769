"""The interactive hull of a system page: pymatgen's plotly figure, with every phase on it.

``PDPlotter(backend="plotly")`` draws the hull from its stable entries: tie lines, facets, axes
and the elements at the corners. It is given the hull's vertices only (the stored stable
phases: a hull is its vertices, and pymatgen builds a PhaseDiagram of thousands of entries
slowly). Its own markers show only the lowest polymorph of each unstable formula and link
nowhere, so they are replaced by two traces of every phase in the page's window (stable ones
as stars), placed where PDPlotter places an entry, coloured by the stored E above hull on one
colour bar, each point carrying its phase's address, formula, space group, energy, source and
campaign (``customdata``) for the hover and for the click that opens its page
(static/plots.js). Stable compounds are labelled where a label overlaps nothing
(:mod:`.labels`); the rest name themselves on hover. The figure is JSON for plotly.js;
nothing in it runs.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymatgen.analysis.phase_diagram import PDPlotter, PhaseDiagram, tet_coord
from pymatgen.core import Composition
from pymatgen.util.string import htmlify

from gnomon.serve.explorer.labels import place_labels

COLORSCALE = "Viridis"
_FONT_PX = 13.0
_PLOT_PX = {2: (700.0, 390.0), 3: (520.0, 520.0), 4: (470.0, 470.0)}  # drawing area, estimated
HOVER = ("<b>%{customdata[1]}</b><br>space group: %{customdata[2]}<br>"
         "E above hull: %{customdata[3]} eV/atom<br>source: %{customdata[4]}<br>"
         "campaign: %{customdata[5]}%{customdata[6]}<extra></extra>")


@dataclass(frozen=True)
class HullPoint:
    """What a point of the hull says of its phase."""

    id: str
    url: str
    formula: str
    spacegroup: str | None
    e_above_hull: float | None
    stable: bool
    source: str | None
    campaign: str | None
    composition: Composition
    formation_energy: float | None  # eV/atom: the height of a binary's point

    def customdata(self, polymorphs: int = 1) -> list[str]:
        """[page, formula, space group, E above hull, source, campaign, note, id]: what the
        hover shows; the note counts the other polymorphs drawn at the same point."""
        e = "–" if self.e_above_hull is None else f"{self.e_above_hull:.3f}"
        text = [self.formula, self.spacegroup or "–", e, self.source or "–",
                self.campaign or "–"]
        esc = [html.escape(t, quote=False) for t in text]
        others = polymorphs - 1
        note = (f"<br><i>{others} other polymorph{'' if others == 1 else 's'} at this "
                "composition: see the table</i>" if others else "")
        return [self.url, htmlify(esc[0]), *esc[1:], note, self.id]


def coordinates(pd: PhaseDiagram, point: HullPoint) -> tuple[float, ...]:
    """Where PDPlotter's plotly figure puts a phase: (fraction of the second element,
    formation energy) for two elements, (a, b, c) fractions on the ternary axes for three,
    the point in the composition tetrahedron for four."""
    comp = point.composition
    fractions = [comp.get_atomic_fraction(el) for el in pd.elements]
    dim = len(pd.elements)
    if dim == 2:
        return fractions[1], float(point.formation_energy or 0.0)
    if dim == 3:
        return tuple(fractions)
    return tuple(float(v) for v in tet_coord(pd.pd_coords(comp)))


def _pixels(dim: int, coords: list[tuple[float, ...]], camera_eye=(1.25, 1.25, 1.25)):
    """The points in estimated screen pixels (y up), for placing labels."""
    w, h = _PLOT_PX[dim]
    if dim == 2:
        ys = [c[1] for c in coords] + [0.0]
        lo, hi = min(ys), max(ys)
        span = (hi - lo) or 1.0
        return [(c[0] * w, (c[1] - lo) / span * h) for c in coords]
    if dim == 3:
        return [((0.5 * a + c) / (a + b + c) * w, (math.sqrt(3) / 2) * a / (a + b + c) * w)
                for a, b, c in coords]
    eye = np.asarray(camera_eye, float)
    eye /= np.linalg.norm(eye)
    right = np.cross([0.0, 0.0, 1.0], eye)
    right /= np.linalg.norm(right)
    up = np.cross(eye, right)
    points = [np.asarray(c, float) for c in coords]
    return [(float(np.dot(p, right)) * w, float(np.dot(p, up)) * h) for p in points]


def _base_figure(pd: PhaseDiagram):
    """PDPlotter's figure of the hull alone (the lines, the quaternary's facets), without its
    markers, labels and the ternary's arbitrarily coloured facets."""
    fig = PDPlotter(pd, backend="plotly", show_unstable=0).get_plot(label_stable=True)
    drop = {"Stable", "Above Hull", "Labels (stable)"}
    fig.data = [t for t in fig.data if t.name not in drop
                and not (t.type == "scatterternary" and getattr(t, "fill", None) == "toself")]
    return fig


_AXES = {2: ("x", "y"), 3: ("a", "b", "c"), 4: ("x", "y", "z")}
_KIND = {2: "scatter", 3: "scatterternary", 4: "scatter3d"}
#: the plotly.js trace types of the hull figure of 2, 3 and 4 elements (its page loads the
#: smallest plotly.js bundle that draws them)
TRACE_TYPES = {2: frozenset({"scatter"}), 3: frozenset({"scatterternary"}),
               4: frozenset({"scatter3d", "mesh3d"})}


def _margin(dim: int) -> dict[str, int]:
    """The figure's margins (px): as wide as plotly.js makes them for the colour bar (right),
    the legend (below) and a binary's energy ticks (left), so that it draws the figure once,
    not a second time with its margins widened (a quarter of a binary hull's drawing time)."""
    return {"l": 70 if dim == 2 else 60, "r": 150, "t": 30, "b": 80}


def _size(dim: int, stable: bool) -> int:
    return (16 if stable else 10) if dim != 4 else (9 if stable else 6)


def _outline(dim: int, stable: bool) -> float:
    """The width of a marker's dark outline (px). None on the quaternary's unstable phases:
    WebGL draws each scatter3d outline as some 25 line segments in each of a frame's three
    passes (opaque, translucent, picking), which cost a browser without a GPU (software
    WebGL) about a second of CPU per 1,500 phases at load; their colour tells them apart."""
    if stable:
        return 1.2
    return 0.6 if dim != 4 else 0.0


def _marker_trace(dim: int, name: str, coords, points: list[HullPoint], stable: bool,
                  cmax: float, polymorphs: Mapping[str, int]) -> dict[str, Any]:
    trace: dict[str, Any] = {
        "type": _KIND[dim], "mode": "markers", "name": name, "showlegend": True,
        "customdata": [p.customdata(polymorphs[p.formula]) for p in points],
        "hovertemplate": HOVER,
        "marker": {
            "color": [p.e_above_hull or 0.0 for p in points], "colorscale": COLORSCALE,
            "cmin": 0.0, "cmax": cmax, "showscale": not stable, "size": _size(dim, stable),
            "symbol": ("diamond" if dim == 4 else "star") if stable else "circle",
            "line": {"color": "#222", "width": _outline(dim, stable)},
            "colorbar": {"title": {"text": "E above hull<br>(eV/atom)"}, "len": 0.75},
        },
    }
    for i, axis in enumerate(_AXES[dim]):
        trace[axis] = [c[i] for c in coords]
    if dim != 4:
        trace["cliponaxis"] = False  # a point or label on the frame stays whole
    return trace


def _label(trace: dict[str, Any], dim: int, coords, points: list[HullPoint],
           obstacles: list[tuple[float, ...]]) -> None:
    """Name the stable compounds on their markers, each where its label overlaps no other
    label and no point (or not at all: it still names itself on hover)."""
    texts = [p.formula if _is_compound(p.formula) else None for p in points]
    order = sorted(range(len(points)), key=lambda i: coords[i][-1] if dim == 2 else i)
    pixels = _pixels(dim, [coords[i] for i in order] + list(obstacles))
    where = place_labels(pixels[:len(order)], [texts[i] for i in order], font_px=_FONT_PX,
                         marker_px=_size(dim, True) / 2 + 1, obstacles=pixels[len(order):])
    positions: list[str] = ["top center"] * len(points)
    shown = [""] * len(points)
    for i, pos in zip(order, where, strict=True):
        if pos is not None:
            positions[i] = pos
            shown[i] = htmlify(html.escape(points[i].formula, quote=False))
    trace.update(mode="markers+text", text=shown, textposition=positions,
                 textfont={"size": _FONT_PX, "color": "#111", "shadow": "auto"})


def _is_compound(formula: str) -> bool:
    """More than one element symbol (an element's corner is named by the axes)."""
    return sum(ch.isupper() for ch in formula) > 1


def hull_figure(pd: PhaseDiagram, points: Sequence[HullPoint]) -> dict[str, Any]:
    """The plotly figure (a JSON-ready dict) of the hull ``pd`` (its stable entries suffice)
    with a marker for each of ``points`` (the phases of the page's window)."""
    dim = len(pd.elements)
    if not 2 <= dim <= 4:
        raise ValueError(f"hull figures need 2 to 4 elements, not {dim}")
    fig = _base_figure(pd)
    cmax = max(max((p.e_above_hull or 0.0 for p in points), default=0.0), 0.05)
    data = [t.to_plotly_json() for t in fig.data]
    unstable = [p for p in points if not p.stable]
    stable = [p for p in points if p.stable]
    below = [coordinates(pd, p) for p in unstable]
    polymorphs = Counter(p.formula for p in points)
    if unstable:
        data.append(_marker_trace(dim, "above the hull", below, unstable, False, cmax,
                                  polymorphs))
    if stable:
        coords = [coordinates(pd, p) for p in stable]
        trace = _marker_trace(dim, "on the hull", coords, stable, True, cmax, polymorphs)
        _label(trace, dim, coords, stable, below)
        data.append(trace)
    layout = fig.layout.to_plotly_json()
    layout.pop("coloraxis", None)
    layout.update(
        legend={"orientation": "h", "x": 0, "y": -0.08, "xanchor": "left", "yanchor": "top"},
        hovermode="closest", autosize=True, height=560 if dim != 2 else 480,
        margin=_margin(dim), font={"size": _FONT_PX},
    )
    return {"data": data, "layout": layout}
