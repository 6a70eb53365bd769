"""Vectorised queries on a pymatgen PhaseDiagram's lower hull.

pymatgen answers "how far is this entry above the hull" one entry at a time, looping over
facets in Python; a database recomputing thousands of entries pays for that loop per entry.
Here the facets pymatgen already computed are turned once into barycentric transforms, and
then the hull energy of every composition is one numpy expression. The facets, vertices and
energies are pymatgen's own, so the numbers are the same; the property tests hold them to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition

_INSIDE_TOL = 1e-9  # pymatgen's in_simplex tolerance (numerical_tol / 10)
_CHUNK = 4096


class HullGeometry:
    """The lower hull of ``pd`` as arrays: facet vertices, energies, inverse edge matrices."""

    def __init__(self, pd: PhaseDiagram):
        self._setup(list(pd.elements), pd.qhull_data, pd.facets)

    @classmethod
    def from_arrays(
        cls, elements: Sequence, qhull_data: np.ndarray, facets: Sequence
    ) -> HullGeometry:
        """From a hull built outside pymatgen (rows: fractions of elements[1:], energy)."""
        geometry = cls.__new__(cls)
        geometry._setup(list(elements), qhull_data, facets)
        return geometry

    def _setup(self, elements: list, qhull_data, facets) -> None:
        self.elements = elements
        self.dim = len(self.elements)
        data = np.asarray(qhull_data, dtype=float)
        facets = np.asarray(facets, dtype=int).reshape(len(facets), -1)
        self.facets = facets
        if self.dim == 1:
            self._min_e = float(data[facets[0][0], -1])
            return
        vertices = data[facets]  # (F, dim, dim): dim-1 composition coords + energy per atom
        self._origin = vertices[:, 0, :-1]  # (F, dim-1)
        self._energies = vertices[:, :, -1]  # (F, dim)
        edges = vertices[:, 1:, :-1] - vertices[:, :1, :-1]  # (F, dim-1, dim-1)
        self._inv = np.linalg.inv(edges)

    def coords(self, compositions: Sequence[Composition]) -> np.ndarray:
        """pymatgen's pd_coords for many compositions: atomic fractions of elements[1:]."""
        return np.array(
            [[c.get_atomic_fraction(el) for el in self.elements[1:]] for c in compositions],
            dtype=float,
        ).reshape(len(compositions), self.dim - 1)

    def hull_energies(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hull energy per atom at each point, the facet it lies in and its barycentric weights.

        A point outside every facet (which only rounding can cause) gets facet -1 and NaN.
        """
        n = len(coords)
        if self.dim == 1:
            return np.full(n, self._min_e), np.zeros(n, dtype=int), np.ones((n, 1))
        energy = np.empty(n)
        facet = np.empty(n, dtype=int)
        weights = np.empty((n, self.dim))
        for start in range(0, n, _CHUNK):
            x = coords[start : start + _CHUNK]
            lam = np.einsum("fnd,fde->fne", x[None, :, :] - self._origin[:, None, :], self._inv)
            bary = np.concatenate([1.0 - lam.sum(-1, keepdims=True), lam], axis=-1)  # (F, n, dim)
            inside = (bary >= -_INSIDE_TOL).all(-1)
            e = np.einsum("fnd,fd->fn", bary, self._energies)
            e = np.where(inside, e, np.inf)
            best = e.argmin(0)
            cols = np.arange(len(x))
            found = np.isfinite(e[best, cols])
            energy[start : start + len(x)] = np.where(found, e[best, cols], np.nan)
            facet[start : start + len(x)] = np.where(found, best, -1)
            weights[start : start + len(x)] = bary[best, cols]
        return energy, facet, weights

    def decompositions(
        self, facets: np.ndarray, weights: np.ndarray, tol: float = 1e-8
    ) -> list[np.ndarray]:
        """For each point (its facet and barycentric weights from :meth:`hull_energies`), the
        indices into ``pd.qhull_entries`` of the phases it splits into; none for facet -1."""
        if len(facets) == 0:
            return []
        vertices = self.facets[np.maximum(facets, 0)]  # (n, dim)
        keep = (weights > tol) & (facets >= 0)[:, None]
        return [v[k] for v, k in zip(vertices, keep, strict=True)]
