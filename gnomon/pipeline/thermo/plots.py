"""Hull diagrams a scientist would publish, for `gnomon hull --plot`, the campaign report and
the explorer's static figure.

pymatgen's PDPlotter gives the geometry (the hull's edges and every entry's position: the
composition line of a binary with its formation energy, Gibbs triangle of a ternary,
tetrahedron of a quaternary); the drawing is gnomon's own because PDPlotter's matplotlib
figure leaves out phases above its ``show_unstable`` cut, names them without their energy,
sets 24-28 pt labels at fixed offsets (they overlap in Li-Mn-O) and says "Fraction" on its
axis. Here every phase within the window is drawn: on the hull as black circles joined by the
hull's edges, above it as squares coloured by their energy above the hull (eV/atom, colour
bar) and labelled with it; labels are placed so none overlaps another
(gnomon.pipeline.thermo.label_placement); the title names the system, the energy scheme and
the counts. The figure is a ``matplotlib.figure.Figure`` of its own (no pyplot state), so
the server can draw while a notebook keeps its backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from pymatgen.analysis.phase_diagram import PDPlotter, PhaseDiagram
from pymatgen.util.string import unicodeify

from gnomon.pipeline.thermo.label_placement import Label, LabelPlacer
from gnomon.pipeline.thermo.units import EV_PER_ATOM, rounded, shown
from gnomon.storage.chemsys import chemsys_of

MAX_LABELS = 60  # beyond this many labels the rest are listed under the figure
LISTED_UNLABELLED = 12  # names listed under the figure before "and N more"
MARKER_PT = 6.5
COLORMAP = "plasma"
# a fixed view of a quaternary's tetrahedron: no vertex hides behind another
_AZIMUTH, _ELEVATION = math.radians(-62.0), math.radians(18.0)


@dataclass
class PlottedPhase:
    """One entry as drawn: where, what it is called, how far above the hull."""

    entry_id: str
    name: str
    xy: tuple[float, float]
    e_above_hull: float
    is_element: bool


def _project(coords: np.ndarray) -> np.ndarray:
    """Page coordinates of tetrahedron points (n x 3): a rotation about z, then a tilt."""
    x, y, z = coords[:, 0] - 0.5, coords[:, 1] - math.sqrt(3) / 6, coords[:, 2]
    ca, sa = math.cos(_AZIMUTH), math.sin(_AZIMUTH)
    xr, yr = ca * x - sa * y, sa * x + ca * y
    return np.column_stack([xr, yr * math.sin(_ELEVATION) + z * math.cos(_ELEVATION)])


def _geometry(pd: PhaseDiagram) -> tuple[np.ndarray, list[tuple]]:
    """Hull edges (n x 4, page coordinates) and (entry, page xy) of every entry."""
    lines, stable, unstable = PDPlotter(pd, backend="matplotlib", show_unstable=0).pd_plot_data
    quaternary = len(pd.elements) == 4
    edges = []
    for line in lines:
        pts = np.asarray(line, dtype=float).T  # one row per end of the edge
        pts = _project(pts) if quaternary else pts[:, :2]
        edges.append([*pts[0], *pts[1]])
    placed = [(entry, coords) for coords, entry in stable.items()]
    placed += [(entry, coords) for entry, coords in unstable.items()]
    points = []
    for entry, coords in placed:
        xy = np.asarray(coords, dtype=float)
        xy = _project(xy[None, :])[0] if quaternary else xy[:2]
        points.append((entry, (float(xy[0]), float(xy[1]))))
    return np.asarray(edges, dtype=float).reshape(-1, 4), points


def _phases(pd: PhaseDiagram, points: list[tuple], window: float | None) -> list[PlottedPhase]:
    """Every entry of ``pd`` within ``window`` eV/atom of the hull (all with None), as drawn."""
    out = []
    for entry, xy in points:
        above = 0.0 if entry in pd.stable_entries else float(pd.get_e_above_hull(entry))
        if window is not None and above > window + 1e-12:
            continue
        out.append(
            PlottedPhase(str(entry.entry_id), _name(entry.composition), xy, above,
                         entry.composition.is_element)
        )
    return out


def _name(composition) -> str:
    """What a label says: the reduced formula, an element by its symbol (O, not O2)."""
    if composition.is_element:
        return composition.elements[0].symbol
    return composition.reduced_formula


def _label_of(phase: PlottedPhase, centre: np.ndarray) -> Label:
    away = np.asarray(phase.xy) - centre
    norm = float(np.linalg.norm(away))
    outward = (float(away[0] / norm), float(away[1] / norm)) if norm > 1e-9 else (0.0, 1.0)
    if phase.e_above_hull > 0:
        return Label(phase.xy, f"{unicodeify(phase.name)} {shown(phase.e_above_hull, signed=True)}",
                     f"phase-{phase.entry_id}", fontsize=8.0, color="0.2", outward=outward)
    if phase.is_element:
        return Label(phase.xy, phase.name, f"phase-{phase.entry_id}", fontsize=11.0,
                     weight="bold", outward=outward)
    return Label(phase.xy, unicodeify(phase.name), f"phase-{phase.entry_id}", fontsize=9.5,
                 outward=outward)


def _frame(ax, pd: PhaseDiagram, phases: list[PlottedPhase]) -> None:
    """Axes limits and words: a binary's composition and formation energy axes, or a bare
    triangle/tetrahedron whose corners are labelled by their elements."""
    xy = np.array([p.xy for p in phases])
    if len(pd.elements) == 2:
        a, b = (el.symbol for el in pd.elements)
        low, high = min(float(xy[:, 1].min()), 0.0), max(float(xy[:, 1].max()), 0.0)
        span = max(high - low, 0.1)
        ax.set_xlim(-0.12, 1.12)
        ax.set_ylim(low - 0.18 * span, high + 0.18 * span)
        ax.axhline(0.0, color="0.75", lw=0.8, ls="--", zorder=0)
        ax.set_xlabel(f"$x$ in {a}$_{{1-x}}${b}$_{{x}}$ (atomic fraction of {b})", fontsize=11)
        ax.set_ylabel(f"Formation energy ({EV_PER_ATOM})", fontsize=11)
        ax.tick_params(labelsize=9)
        return
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    margin = 0.16 * max(x1 - x0, y1 - y0)
    ax.set_xlim(x0 - margin, x1 + margin)
    ax.set_ylim(y0 - margin, y1 + margin)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()


def hull_figure(
    pd: PhaseDiagram, scheme: str | None = None, window: float | None = None
) -> Figure:
    """The hull of ``pd`` (2 to 4 elements) with every phase within ``window`` eV/atom of it
    (all with None); each phase's label has gid ``phase-<entry id>``."""
    n = len(pd.elements)
    if not 2 <= n <= 4:
        raise ValueError(f"hull diagrams need 2 to 4 elements; this hull has {n}")
    edges, points = _geometry(pd)
    phases = _phases(pd, points, window)
    above = [p for p in phases if p.e_above_hull > 0]
    fig = Figure(figsize=(7.2, 5.4) if n == 2 else (7.2, 6.4), dpi=100)
    FigureCanvasAgg(fig)
    right = 0.80 if above else 0.95
    ax = fig.add_axes((0.12, 0.14, right - 0.12, 0.74))
    _frame(ax, pd, phases)
    edge_style = {"color": "0.45", "lw": 0.8} if n == 4 else {"color": "black", "lw": 1.2}
    for x0, y0, x1, y1 in edges:
        ax.plot([x0, x1], [y0, y1], zorder=1, **edge_style)
    on = [p for p in phases if p.e_above_hull <= 0]
    ax.scatter([p.xy[0] for p in on], [p.xy[1] for p in on], s=MARKER_PT**2, c="black",
               zorder=3, gid="phases-on-hull")
    if above:
        top = max(p.e_above_hull for p in above)
        mappable = ScalarMappable(Normalize(0.0, top), COLORMAP)
        ax.scatter([p.xy[0] for p in above], [p.xy[1] for p in above], s=MARKER_PT**2,
                   marker="s", c=[p.e_above_hull for p in above], cmap=COLORMAP,
                   norm=mappable.norm, edgecolors="black", linewidths=0.5, zorder=2,
                   gid="phases-above-hull")
        bar = fig.colorbar(mappable, cax=fig.add_axes((0.85, 0.14, 0.025, 0.74)))
        bar.set_label(f"Energy above hull ({EV_PER_ATOM})", fontsize=10)
        bar.ax.tick_params(labelsize=8)
    fig.suptitle(_title(pd, scheme, phases, window), fontsize=12)
    unlabelled = _label(ax, phases, edges)
    if unlabelled:
        _list_unlabelled(ax, unlabelled)
    return fig


def _title(
    pd: PhaseDiagram, scheme: str | None, phases: list[PlottedPhase], window: float | None
) -> str:
    system = chemsys_of([el.symbol for el in pd.elements])
    head = f"{system} convex hull" + (f", scheme {scheme}" if scheme else "")
    n_on = sum(1 for p in phases if p.e_above_hull <= 0)
    counts = f"{n_on} phases on the hull, {len(phases) - n_on} above"
    if window is not None:
        counts += f" (within {rounded(window)} {EV_PER_ATOM})"
    return f"{head}\n{counts}"


def _label(ax, phases: list[PlottedPhase], edges: np.ndarray) -> list[PlottedPhase]:
    """Label every phase that finds room, elements first, then the hull, then the rest by
    energy above the hull; the phases left unlabelled."""
    xy = np.array([p.xy for p in phases])
    centre = xy.mean(axis=0)
    placer = LabelPlacer(ax, xy, MARKER_PT * ax.figure.dpi / 72 / 2 + 1, edges)
    order = sorted(phases, key=lambda p: (not p.is_element, p.e_above_hull > 0, p.e_above_hull,
                                          p.xy[1]))
    unlabelled = []
    for i, phase in enumerate(order):
        if i >= MAX_LABELS or placer.place(_label_of(phase, centre)) is None:
            unlabelled.append(phase)
    return unlabelled


def _list_unlabelled(ax, phases: list[PlottedPhase]) -> None:
    """Name, under the axes, the phases drawn without room for a label."""
    names = [
        f"{unicodeify(p.name)} {shown(p.e_above_hull, signed=True)}" for p in phases
    ][:LISTED_UNLABELLED]
    more = len(phases) - len(names)
    text = "Drawn without a label (no room): " + ", ".join(names)
    if more:
        text += f", and {more} more"
    ax.annotate(text, (0.0, 0.0), xycoords="axes fraction", xytext=(0, -42),
                textcoords="offset points", va="top", fontsize=8, color="0.3", wrap=True,
                gid="unlabelled-phases")


def plot_hull(
    pd: PhaseDiagram, path: Path | str, scheme: str | None = None, window: float | None = None
) -> Path:
    """The hull figure written to ``path`` (PNG, SVG or PDF from its suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hull_figure(pd, scheme, window).savefig(path, dpi=150, bbox_inches="tight")
    return path
