"""pymatgen's PhaseDiagram construction on plain arrays.

Recomputing many chemical systems spends most of its time in pymatgen's Composition objects
(sorting entries by reduced composition, atomic fractions one element at a time), not in
the convex hull itself. This module rebuilds the same hull, step for step as
``PhaseDiagram._compute`` does (lowest entry per composition, elemental references,
negative formation energies only, qhull with "Qt i", facets without the extra point and
without degenerate simplices), from arrays of atomic fractions and energies per atom.
The property tests hold it to pymatgen's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.analysis.phase_diagram import PhaseDiagram, get_facets
from scipy.optimize import linprog
from scipy.sparse import block_diag

from gnomon.pipeline.thermo.hull_geometry import HullGeometry

FORMATION_TOL = PhaseDiagram.formation_energy_tol
AMOUNT_TOL = 1e-8  # pymatgen's Composition.amount_tolerance


def _amounts(docs: Sequence[dict[str, Any]], elements: Sequence[str]) -> np.ndarray:
    """Absolute amounts of ``elements`` (columns) in each stored composition (rows)."""
    col = {el: i for i, el in enumerate(elements)}
    rows: list[int] = []
    cols: list[int] = []
    values: list[float] = []
    for r, d in enumerate(docs):
        for el, amt in d["composition"].items():
            rows.append(r)
            cols.append(col[el])
            values.append(amt)
    out = np.zeros((len(docs), len(elements)))
    out[rows, cols] = np.abs(values)
    return out


def fractions(docs: Sequence[dict[str, Any]], elements: Sequence[str]) -> np.ndarray:
    """Atomic fractions (rows: entries, columns: ``elements``) from stored compositions."""
    amounts = _amounts(docs, elements)
    return amounts / amounts.sum(axis=1, keepdims=True)


@dataclass
class ArrayHull:
    """The hull of one chemical system over stored entry documents."""

    elements: list[str]
    docs: list[dict[str, Any]]
    frac: np.ndarray = field(init=False)
    epa: np.ndarray = field(init=False)
    ref_epa: np.ndarray = field(init=False)
    qhull: list[int] = field(init=False)  # rows of docs that went into qhull
    stable: set[int] = field(init=False)  # rows of docs on the hull
    geometry: HullGeometry = field(init=False)

    def __post_init__(self) -> None:
        amounts = _amounts(self.docs, self.elements)
        atoms = amounts.sum(axis=1)
        self.frac = amounts / atoms[:, None]
        self.epa = np.array([d["energy"] for d in self.docs], dtype=float) / atoms
        epa = self.epa.tolist()
        lowest: dict[str, int] = {}
        for i, d in enumerate(self.docs):  # first of equal energies wins, as in pymatgen
            key = d["reduced_formula"]
            if key not in lowest or epa[i] < epa[lowest[key]]:
                lowest[key] = i
        mins = list(lowest.values())
        present = self.frac[mins] > 0
        single = np.flatnonzero(present.sum(axis=1) == 1)
        refs: dict[int, int] = {int(present[k].argmax()): mins[k] for k in single.tolist()}
        missing = set(range(len(self.elements))) - set(refs)
        if missing:
            raise ValueError(
                f"no elemental reference for {sorted(self.elements[m] for m in missing)}"
            )
        self.ref_epa = np.array([self.epa[refs[k]] for k in range(len(self.elements))])
        form = self.epa[mins] - self.frac[mins] @ self.ref_epa
        chosen = [m for m, f in zip(mins, form, strict=True) if f < -FORMATION_TOL]
        position = {m: k for k, m in enumerate(mins)}
        chosen += [refs[k] for k in sorted(refs, key=lambda k: position[refs[k]])]
        self.qhull = chosen
        dim = len(self.elements)
        data = np.column_stack([self.frac[chosen][:, 1:], self.epa[chosen]])
        extra = np.zeros(dim) + 1 / dim
        extra[-1] = np.max(data) + 1
        data = np.concatenate([data, [extra]], axis=0)
        if dim == 1:
            facets = [data.argmin(axis=0)]
        else:
            found = np.asarray(get_facets(data), dtype=int).reshape(-1, dim)
            found = found[found.max(axis=1) != len(data) - 1]  # facets through the extra point
            mats = data[found]
            mats[:, :, -1] = 1
            facets = list(found[np.abs(np.linalg.det(mats)) > 1e-14]) if len(found) else []
        self.stable = {chosen[i] for f in facets for i in f}
        self.geometry = HullGeometry.from_arrays(self.elements, data, facets)

    def hull_energies(self, frac: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hull energy per atom at each row of atomic fractions; facet and weights too."""
        return self.geometry.hull_energies(frac[:, 1:])

    def products_of(self, facets: np.ndarray, weights: np.ndarray) -> list[list[int]]:
        """Rows of docs each point (facet and weights from :meth:`hull_energies`) decomposes
        into."""
        qhull = np.asarray(self.qhull)
        return [qhull[v].tolist() for v in self.geometry.decompositions(facets, weights)]

    def separation_problem(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The linear program behind ``row``'s decomposition energy: ``min c·x`` subject to
        ``A x = b``, ``x >= 0``, over every entry of its subspace except those of its
        composition (pymatgen's competing phases); the minimum is the hull energy per atom at
        row's composition without it."""
        target = self.frac[row]
        inside = target > 0
        same = np.all(np.abs(self.frac - target) <= AMOUNT_TOL, axis=1)
        sub = np.all(self.frac[:, ~inside] == 0, axis=1) & ~same
        return self.epa[sub], self.frac[sub][:, inside].T, target[inside]


class SeparationLP:
    """Many decomposition-energy linear programs solved as one.

    Each stable phase needs the hull energy at its composition without it, a small linear
    program; an ingest has hundreds of them and scipy's ``linprog`` costs milliseconds per
    call before HiGHS starts. Independent programs stacked block-diagonally have the sum of
    their minima as minimum, reached when every block is at its own minimum, so one solve
    answers them all.
    """

    def __init__(self) -> None:
        self._problems: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = []

    def __len__(self) -> int:
        return len(self._problems)

    def add(self, hull: ArrayHull, row: int) -> int:
        """Queue ``row``'s problem; returns its index in :meth:`solve`'s result."""
        c, a, b = hull.separation_problem(row)
        self._problems.append((c, a, b, hull.docs[row]["reduced_formula"]))
        return len(self._problems) - 1

    def solve(self) -> np.ndarray:
        """The minimum of every queued problem, in the order they were added."""

        if not self._problems:
            return np.zeros(0)
        empty = [p[3] for p in self._problems if p[0].size == 0]
        if empty:
            raise RuntimeError(f"no decomposition of {empty[0]} into competing phases")
        c = np.concatenate([p[0] for p in self._problems])
        a = block_diag([p[1] for p in self._problems], format="csc")
        b = np.concatenate([p[2] for p in self._problems])
        result = linprog(c, A_eq=a, b_eq=b, bounds=(0, None), method="highs")
        if not result.success:
            raise RuntimeError(
                f"no decomposition into competing phases for one of "
                f"{sorted({p[3] for p in self._problems})}: {result.message}"
            )
        bounds = np.cumsum([0] + [p[0].size for p in self._problems])
        return np.array(
            [c[s:e] @ result.x[s:e] for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
        )
