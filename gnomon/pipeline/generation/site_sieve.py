"""A site test that rules pairs out before StructureMatcher is asked, and never wrongly.

Two reduced cells on the same lattice with the atoms in different places (rock salt and zinc
blende, say) pass every lattice test, and ``StructureMatcher.fit`` then tries each of up to 48
lattice mappings with each translation before saying no: tens of milliseconds. This module
runs the first stage of that search for all mappings and translations at once, on arrays.

**Why a pair this module rejects is never a match.** ``fit(ref, new,
skip_structure_reduction=True)`` (``scale=True``, ``attempt_supercell=False``, equal site
counts) returns True only through ``_strict_match(ref, new)``, which, for every lattice
``latt`` from ``_get_lattices`` and every translation ``t = s1fc[s1i] - s2fc[anchor]``
(``anchor`` the first site of new with the most sites of ref of another species, ``s1i``
every site of ref of its species), computes a distance only when ``_cmp_fstruct`` passes:
every site of new, moved by ``t``, lies within ``frac_tol`` of a site of ref of its species in
every fractional coordinate of ``latt``, with ``frac_tol_k = |b*_k| stol / (pi n)``
(``b*`` the reciprocal vectors of the lattice averaged from ``latt``'s and new's parameters,
``n = (N / V)^(1/3)`` of that lattice). So ``fit`` is False when no mapping and translation
passes. :func:`may_fit` evaluates that test for

* every unimodular basis of ref's lattice within the matcher's windows of new's basis
  (:func:`gnomon.pipeline.generation.lattice_sieve.mapping_bases`, windows widened by a
  relative 1e-9 and 1e-7 degrees: a superset of the lattices pymatgen yields),
* ref's fractional coordinates in that basis (``f_ref M^-1``, as ``latt.get_fractional_coords``
  computes them from Cartesian coordinates), and new's own,
* the same anchor and translations, and ``frac_tol`` widened by a relative 1e-6.

All of these are invariant under the common scaling the matcher applies, so both cells are
taken at unit volume. Everything is widened, so rounding can only let more pairs through.

**The distance stage.** Where ``_cmp_fstruct`` passes, ``_cart_dists`` pairs the sites
(``v_i``: the vector from new's site ``i``, moved, to its partner ``sigma(i)`` of ref, in the
averaged lattice), removes the mean ``m`` and returns a match only if ``max_i |v_i - m| n <
stol``. Since ``|v_i - v_k| <= |v_i - m| + |v_k - m|``, a match needs ``|v_i - v_k| < 2 stol /
n`` for every two sites, and ``v_i - v_k = x_sigma(i) - x_sigma(k) - (y_i - y_k)`` (``x`` ref's
sites, ``y`` new's) up to a lattice vector, whatever the translation. So a mapping is ruled
out when some two sites ``i, k`` of new have no two distinct partners ``j, j'`` of their
species (any images) with ``|x_j - x_j' - y_i + y_k| < 2 stol / n`` (widened by 1e-6): no
pairing, translation or image choice can bring them both close. (Only pairs holding the
anchor site are tried: enough to tell rock salt from zinc blende, at a cost linear in sites.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from gnomon.pipeline.generation.lattice_sieve import (
    basis_angles,
    lattice_points,
    mapping_bases,
    offset_grid,
)

_LENGTH_WIDEN = 1 + 1e-9
_ANGLE_WIDEN = 1e-7  # degrees
_TOL_WIDEN = 1 + 1e-6
_MAX_TERMS = 2_000_000  # mappings x translations x sites^2 evaluated at once, at most


@dataclass
class SiteView:
    """What :func:`may_fit` reads of a reduced cell, computed once per cell: its basis at
    unit volume, that basis's lengths and angles, fractional coordinates, site species, and
    (when first needed) its short lattice vectors."""

    basis: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    frac: np.ndarray
    species: list[str]
    ordered: bool
    _points: tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray] | None] | None = None

    @classmethod
    def of(cls, reduced: Structure) -> SiteView:
        basis = reduced.lattice.matrix / reduced.volume ** (1 / 3)
        return cls(
            basis,
            np.linalg.norm(basis, axis=1),
            basis_angles(basis),
            reduced.frac_coords,
            [site.species_string for site in reduced],
            reduced.is_ordered,
        )

    def points(self, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The lattice vectors no longer than ``radius`` (a superset), None if too many."""
        if self._points is None or self._points[0] < radius:
            r = 1.25 * radius
            try:
                self._points = (r, lattice_points(self.basis, r))
            except ValueError:
                self._points = (r, None)
        return self._points[1]


def may_fit(ref: SiteView, new: SiteView, ltol: float, stol: float, atol: float) -> bool:
    """False only when ``fit(ref, new, skip_structure_reduction=True)`` is provably False
    (module docstring); both are views of the matcher's reduced cells. True: let the matcher
    decide."""
    n = len(ref.species)
    if n != len(new.species) or not (ref.ordered and new.ordered):
        return True
    hi = (1 + ltol) * _LENGTH_WIDEN
    points = ref.points(float(new.lengths.max()) * hi)
    if points is None:
        return True
    bases = mapping_bases(points, new.lengths, new.angles, hi, atol + _ANGLE_WIDEN)
    if bases is None:
        return True
    if len(bases) == 0:
        return False
    other = np.array([[a != b for b in ref.species] for a in new.species])  # [new, ref]
    anchor = int(np.argmax(other.sum(axis=1)))
    starts = np.nonzero(~other[anchor])[0]
    if len(bases) * len(starts) * n * n > _MAX_TERMS:
        return True
    tol = _frac_tol(bases @ ref.basis, new.lengths, new.angles, n, stol) * _TOL_WIDEN  # (K, 3)
    fc = ref.frac @ np.linalg.inv(bases.astype(float))  # (K, n, 3)
    fc -= np.floor(fc)
    f2 = new.frac
    shifts = fc[:, starts, :] - f2[anchor]  # (K, T, 3)
    moved = f2[None, None, :, :] + shifts[:, :, None, :]  # (K, T, i, 3)
    diff = moved[:, :, :, None, :] - fc[:, None, None, :, :]  # (K, T, i, j, 3)
    diff = np.abs(diff - np.round(diff))
    close = np.all(diff <= tol[:, None, None, None, :], axis=-1) & ~other[None, None]
    passing = np.any(np.all(np.any(close, axis=-1), axis=-1), axis=1)  # (K,): some translation
    if not passing.any():
        return False
    keep = np.nonzero(passing)[0]
    return _pairs_allow(bases[keep] @ ref.basis, fc[keep], new, other, anchor, stol)


def _pairs_allow(
    aligned: np.ndarray,
    fc: np.ndarray,
    new: SiteView,
    other: np.ndarray,
    anchor: int,
    stol: float,
) -> bool:
    """Whether some mapping survives the distance stage's pair bound for the pairs (anchor,
    k) of new's sites (module docstring)."""
    n = len(new.species)
    matrices, norm = _averaged(aligned, new.lengths, new.angles, n)
    reach = 2 * stol / norm * _TOL_WIDEN  # (K,) in the averaged lattices' units
    allowed = ~other  # [new site, ref site]
    pair_ok = allowed[anchor][None, :, None] & allowed[:, None, :]  # [k, j, j']
    pair_ok &= ~np.eye(n, dtype=bool)[None]
    rel = new.frac - new.frac[anchor]  # [k]: y_k - y_anchor
    for m in range(len(aligned)):
        recip = np.linalg.inv(matrices[m]).T
        bounds = np.ceil(reach[m] * np.linalg.norm(recip, axis=1) + 0.5).astype(int)
        images = offset_grid(*(int(b) for b in bounds)) @ matrices[m]
        if n**3 * len(images) > _MAX_TERMS:
            return True
        sep = fc[m][:, None, :] - fc[m][None, :, :]  # [j, j']: x_j - x_j'
        d = sep[None] + rel[:, None, None, :]  # [k, j, j'], fractional
        d -= np.rint(d)
        cart = (d @ matrices[m])[..., None, :] + images
        near = (np.einsum("...x,...x->...", cart, cart) <= reach[m] ** 2).any(axis=-1)
        near &= pair_ok
        found = near.any(axis=(1, 2))
        found[anchor] = True
        if found.all():
            return True
    return False


def _frac_tol(
    aligned: np.ndarray, lengths2: np.ndarray, angles2: np.ndarray, n: int, stol: float
) -> np.ndarray:
    """``frac_tol`` of ``_strict_match`` for each mapped basis (rows of ``aligned[k]``):
    ``|b*_k| stol / (pi n)`` on the lattice with the averaged parameters, where pymatgen's
    reciprocal lengths include the factor 2 pi and ``n = (N / V)^(1/3)``."""
    matrices, norm = _averaged(aligned, lengths2, angles2, n)
    recip = np.linalg.norm(np.linalg.inv(matrices).transpose(0, 2, 1), axis=2)  # |b*_k|
    return 2 * math.pi * recip * stol / (math.pi * norm[:, None])


def _averaged(
    aligned: np.ndarray, lengths2: np.ndarray, angles2: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The lattices ``av_lat`` builds (parameters averaged between each mapped basis and
    new's), as matrices in some orientation, and their ``(N / V)^(1/3)``."""
    lengths1 = np.linalg.norm(aligned, axis=2)
    angles1 = np.stack([_angles(aligned, j, k) for j, k in ((1, 2), (0, 2), (0, 1))], axis=1)
    a, b, c = ((lengths1 + lengths2) / 2).T
    ca, cb, cg = np.cos(np.radians((angles1 + angles2) / 2)).T
    sb = np.sqrt(1 - cb**2)
    ax = np.stack([a * sb, np.zeros_like(a), a * cb], axis=1)
    # b lies in the plane of a and the z axis' complement, as in Lattice.from_parameters
    by_z = b * ca
    bx = b * (cg - cb * ca) / sb
    by = np.sqrt(np.maximum(b**2 - bx**2 - by_z**2, 0.0))
    bv = np.stack([bx, by, by_z], axis=1)
    cv = np.stack([np.zeros_like(c), np.zeros_like(c), c], axis=1)
    matrices = np.stack([ax, bv, cv], axis=1)
    volume = np.abs(np.linalg.det(matrices))
    return matrices, (n / volume) ** (1 / 3)


def _angles(vectors: np.ndarray, j: int, k: int) -> np.ndarray:
    u, v = vectors[:, j], vectors[:, k]
    cos = np.einsum("ki,ki->k", u, v) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
