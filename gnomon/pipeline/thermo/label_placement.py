"""Labels beside the points they name, never on top of each other.

A hull diagram crowds its phases (LiMnO2, LiMn2O4 and Mn3O4 sit within a few points of each
other in Li-Mn-O), and fixed offsets stack their names. Each label here is tried at a ring of
positions around its point, nearest first and in its preferred direction first, and takes the
first one whose box, as matplotlib's renderer measures the text, stays inside the axes and
clear of every label placed before it and of every marker; one that also crosses no line is
preferred. A label that finds no such place is not drawn: the caller lists it elsewhere, so a
figure never hides one name under another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.text import Annotation, Text

RADII_PT = (7.0, 12.0, 18.0, 26.0, 36.0, 48.0)  # distances from the point tried, nearest first
DIRECTIONS = 16  # positions tried on each ring
PAD_PX = 2.0  # clear space kept around every label box
LEADER_FROM_PT = 15.0  # labels placed this far out get a thin line back to their point
# a label stays legible where a line passes behind it; the box is within PAD_PX of the text
_BACKGROUND = {"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none",
               "alpha": 0.75}


@dataclass
class Label:
    """A text to place next to the point ``xy`` (data coordinates)."""

    xy: tuple[float, float]
    text: str
    gid: str
    fontsize: float = 9.0
    color: str = "black"
    weight: str = "normal"
    outward: tuple[float, float] = (0.0, 1.0)  # the preferred direction, on the page


def _alignment(cos: float, sin: float) -> tuple[str, str]:
    """Anchor the text on the side facing its point, so the offset is the gap."""
    ha = "left" if cos > 0.38 else "right" if cos < -0.38 else "center"
    va = "bottom" if sin > 0.38 else "top" if sin < -0.38 else "center"
    return ha, va


def _candidates(outward: tuple[float, float]) -> list[tuple[float, float, float]]:
    """(radius, cos, sin) of every position tried: by ring, then nearest the outward direction."""
    preferred = math.atan2(outward[1], outward[0])
    angles = [2 * math.pi * k / DIRECTIONS for k in range(DIRECTIONS)]
    angles.sort(key=lambda a: abs(math.remainder(a - preferred, 2 * math.pi)))
    return [(r, math.cos(a), math.sin(a)) for r in RADII_PT for a in angles]


def text_box(label: Annotation, renderer) -> np.ndarray:
    """The page box (x0, y0, x1, y1) of a label's text alone, without its leader line."""
    label.update_positions(renderer)
    return np.asarray(Text.get_window_extent(label, renderer).extents)


def _crossings(box: np.ndarray, segments: np.ndarray) -> int:
    """How many of ``segments`` (n x 4 display coordinates) pass through ``box``: sampled along
    each segment, enough for boxes a few pixels wide."""
    if not len(segments):
        return 0
    t = np.linspace(0.0, 1.0, 33)[:, None]
    xs = segments[:, 0] + t * (segments[:, 2] - segments[:, 0])
    ys = segments[:, 1] + t * (segments[:, 3] - segments[:, 1])
    inside = (xs > box[0]) & (xs < box[2]) & (ys > box[1]) & (ys < box[3])
    return int(inside.any(axis=0).sum())


class LabelPlacer:
    """Places labels on one axes; obstacles are marker centres and line segments (data)."""

    def __init__(self, ax: Axes, markers: np.ndarray, marker_px: float, segments: np.ndarray):
        self.ax = ax
        self.renderer = ax.figure.canvas.get_renderer()
        ax.apply_aspect()  # the data-to-page transform is final from here on
        self.frame = ax.get_window_extent(self.renderer)
        to_page = ax.transData.transform
        self.markers = to_page(markers) if len(markers) else np.zeros((0, 2))
        self.marker_px = marker_px
        self.segments = (
            np.hstack([to_page(segments[:, :2]), to_page(segments[:, 2:])])
            if len(segments)
            else np.zeros((0, 4))
        )
        self.boxes = np.zeros((0, 4))
        self.pt = ax.figure.dpi / 72.0

    def _fits(self, box: np.ndarray) -> bool:
        f = self.frame
        if box[0] < f.x0 or box[1] < f.y0 or box[2] > f.x1 or box[3] > f.y1:
            return False
        b = self.boxes
        if len(b) and np.any(
            (b[:, 0] < box[2]) & (b[:, 2] > box[0]) & (b[:, 1] < box[3]) & (b[:, 3] > box[1])
        ):
            return False
        m, r = self.markers, self.marker_px
        return not (
            len(m)
            and np.any(
                (m[:, 0] > box[0] - r)
                & (m[:, 0] < box[2] + r)
                & (m[:, 1] > box[1] - r)
                & (m[:, 1] < box[3] + r)
            )
        )

    def place(self, label: Label) -> Annotation | None:
        """The label drawn at its best free position, or None (nothing drawn) where none is."""
        text = self.ax.annotate(
            label.text, label.xy, xytext=(0, 0), textcoords="offset points",
            fontsize=label.fontsize, color=label.color, fontweight=label.weight, gid=label.gid,
        )
        best: tuple[int, float, float, float, np.ndarray] | None = None
        for radius, cos, sin in _candidates(label.outward):
            ha, va = _alignment(cos, sin)
            text.set_position((radius * cos, radius * sin))
            text.set_horizontalalignment(ha)
            text.set_verticalalignment(va)
            box = text_box(text, self.renderer) + np.array([-PAD_PX, -PAD_PX, PAD_PX, PAD_PX])
            if not self._fits(box):
                continue
            crossed = _crossings(box, self.segments)
            if best is None or crossed < best[0]:
                best = (crossed, radius, cos, sin, box)
            if crossed == 0:
                break
        text.remove()
        if best is None:
            return None
        _, radius, cos, sin, box = best
        self.boxes = np.vstack([self.boxes, box])
        ha, va = _alignment(cos, sin)
        leader = (
            {"arrowstyle": "-", "lw": 0.5, "color": "0.45", "shrinkA": 1, "shrinkB": 4}
            if radius >= LEADER_FROM_PT
            else None
        )
        return self.ax.annotate(
            label.text, label.xy, xytext=(radius * cos, radius * sin), textcoords="offset points",
            ha=ha, va=va, fontsize=label.fontsize, color=label.color, fontweight=label.weight,
            gid=label.gid, arrowprops=leader, bbox=_BACKGROUND,
        )
