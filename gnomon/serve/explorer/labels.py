"""Labels that never overlap: where to put each point's text, or to leave it off.

A hull diagram's compounds crowd where the chemistry is (LiMnO2, LiMn2O4 and Mn3O4 sit close
in Li-Mn-O). Each label tries the eight places around its point, in a fixed order, and takes
the first whose box overlaps no label placed before it and no other point; a label with no
free place is left off (its point still names itself on hover). Boxes are estimated in pixels
from the text's length at the figure's font size, which is what matters for overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: plotly textposition -> (horizontal, vertical) side of the point the box lies on
POSITIONS: dict[str, tuple[int, int]] = {
    "top center": (0, 1), "bottom center": (0, -1), "middle right": (1, 0),
    "middle left": (-1, 0), "top right": (1, 1), "top left": (-1, 1),
    "bottom right": (1, -1), "bottom left": (-1, -1),
}


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box) -> bool:
        return (self.x0 < other.x1 and other.x0 < self.x1
                and self.y0 < other.y1 and other.y0 < self.y1)


def text_size(text: str, font_px: float) -> tuple[float, float]:
    """(width, height) in px of one line of ``text``: 0.62 em a character is a safe upper
    bound for the sans-serif digits and letters of formulas."""
    return 0.62 * font_px * max(len(text), 1) + 4.0, 1.25 * font_px + 2.0


def label_box(x: float, y: float, size: tuple[float, float], position: str,
              gap: float) -> Box:
    """The box of a label at ``position`` around the point (x, y) (y grows upward)."""
    w, h = size
    sx, sy = POSITIONS[position]
    cx = x + sx * (w / 2 + gap)
    cy = y + sy * (h / 2 + gap)
    return Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


class _Grid:
    """Boxes filed by the grid cells they touch, so a new box is compared only with its
    neighbours (a hull of a thousand phases would otherwise take a million comparisons)."""

    def __init__(self, cell: float = 48.0):
        self.cell = cell
        self.cells: dict[tuple[int, int], list[tuple[int, Box]]] = {}

    def _keys(self, box: Box):
        c = self.cell
        for i in range(int(box.x0 // c), int(box.x1 // c) + 1):
            for j in range(int(box.y0 // c), int(box.y1 // c) + 1):
                yield i, j

    def add(self, box: Box, owner: int = -1) -> None:
        for key in self._keys(box):
            self.cells.setdefault(key, []).append((owner, box))

    def hits(self, box: Box, ignore: int = -2) -> bool:
        return any(owner != ignore and box.overlaps(other)
                   for key in self._keys(box) for owner, other in self.cells.get(key, ()))


def place_labels(points: Sequence[tuple[float, float]], texts: Sequence[str | None],
                 font_px: float = 12.0, marker_px: float = 6.0,
                 obstacles: Sequence[tuple[float, float]] = ()) -> list[str | None]:
    """A plotly ``textposition`` for each point (pixel coordinates), in order of priority,
    or None where its label is left off (``texts[i]`` None: no label wanted)."""
    marks, labels = _Grid(), _Grid()
    for j, (x, y) in enumerate([*points, *obstacles]):
        marks.add(Box(x - marker_px, y - marker_px, x + marker_px, y + marker_px), j)
    out: list[str | None] = []
    for i, ((x, y), text) in enumerate(zip(points, texts, strict=True)):
        choice = None
        if text:
            size = text_size(text, font_px)
            for position in POSITIONS:
                box = label_box(x, y, size, position, marker_px)
                if not labels.hits(box) and not marks.hits(box, ignore=i):
                    choice = position
                    labels.add(box)
                    break
        out.append(choice)
    return out
