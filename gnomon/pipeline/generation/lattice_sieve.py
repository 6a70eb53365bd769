"""A lattice test that rules pairs out before StructureMatcher is asked, and never wrongly.

:mod:`gnomon.pipeline.generation.dedup` asks ``StructureMatcher.fit(ref, new)`` (``scale=True``,
``primitive_cell=True``, ``attempt_supercell=False``) only for pairs this module cannot rule
out. The test needs no pymatgen Structure and no primitive-cell search: a structure's lattice
is reduced by spglib's Niggli reduction (tens of microseconds), once per structure.

**Why a pair this module rejects is never a match.** With equal site counts ``fit`` calls
``_strict_match(ref, new)`` after scaling both reduced cells to one volume, and that returns
a match only for a lattice yielded by ``ref.lattice.find_all_mappings(new.lattice, ltol,
angle_tol)`` whose integer matrix has ``|det| = 1`` (``_get_lattices`` with
``supercell_size=1``, ``abs_tol=0.5``). Such a lattice is a basis ``(v1, v2, v3)`` of ref's
lattice with ``1/(1+ltol) < |v_i|/l_i < 1+ltol`` and ``|angle(v_j, v_k) - theta_i| <=
angle_tol``, where ``l`` and ``theta`` are the lengths and angles of new's reduced basis. In
units of each lattice's own ``V^(1/3)`` the common scaling drops out. So ``fit`` is False
whenever ref's lattice has no unimodular triple of vectors within those windows.

:func:`may_match` searches every lattice vector of ref within the largest window (generated
from a Niggli basis with index bounds ``|n_i| <= r |b*_i|``, so none is missed) for such a
triple, with every window *widened*, so rounding and the choice of reduced basis can only let
more pairs through:

* new's reduced basis is pymatgen's: ``Lattice.get_niggli_reduced_lattice`` computes the Niggli
  form and then returns the first basis of the lattice within a relative length tolerance of
  ``1e-5 V^(1/3)`` and 1 degree of it (``find_mapping(..., e, skip_rotation_matrix=True)``).
  The Niggli form of a lattice is unique, so spglib's Niggli parameters equal pymatgen's to
  the reductions' own tolerances (~1e-5). Lengths are widened by a factor ``1.001`` times
  ``1 + 1e-5 V^(1/3)`` (V of new's primitive cell in cubic angstroms: the relative tolerance
  ``find_mapping`` is given) and angles by ``1.01`` degrees; every basis pymatgen could return
  is inside.
* ref's lattice is the same point set whichever basis spans it; ``|det|`` of the integer
  matrix is basis independent.

The successive-minima bound the deduplicator used before (the sorted minima of ref below
``(1 + ltol)`` times new's sorted lengths) follows from the same windows and is kept as a
cheaper first check. Both structures' lattices must be the lattices of the *primitive* cells
the matcher reduces to; the deduplicator gives this module the input cell only when pymatgen's
primitive search provably returns it unchanged (:func:`cell_is_primitive_for_matcher`).

Where the search would be large (a very skewed cell: more than ``_MAX_POINTS`` lattice
vectors), the test answers "may match" and StructureMatcher decides.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache, reduce

import numpy as np
import spglib

LENGTH_SLACK = 1.001  # relative, on top of pymatgen's Niggli length tolerance (see slack)
ANGLE_SLACK = 1.01  # degrees: pymatgen's Niggli basis may sit up to 1 degree from the form
_MAX_POINTS = 20_000
_MAX_TRIPLES = 2_000_000


@dataclass
class LatticeInvariants:
    """A primitive lattice, reduced and scaled to unit volume: what :func:`may_match` reads.

    ``basis`` rows are a Niggli basis divided by ``V^(1/3)``; ``lengths`` and ``angles``
    (degrees) are its parameters; ``minima`` the sorted lengths (the successive minima);
    ``nsites`` the number of sites in the primitive cell; ``slack`` the factor by which
    windows on this lattice's reduced lengths are widened.
    """

    nsites: int
    slack: float
    basis: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    minima: np.ndarray
    _points: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = field(
        default=None, repr=False
    )

    def points(self, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Integer coordinates, Cartesian vectors and lengths of every lattice vector shorter
        than ``radius`` (unit-volume units; a superset: callers filter by length), or None
        when there would be too many to search. Computed once per lattice, at a radius with
        room for the next caller."""
        if self._points is None or self._points[0] < radius:
            r = 1.25 * radius
            try:
                self._points = (r, *lattice_points(self.basis, r))
            except ValueError:
                return None
        return self._points[1:]


def lattice_invariants(matrix: np.ndarray, nsites: int) -> LatticeInvariants | None:
    """The invariants of the lattice with row vectors ``matrix`` (None if spglib cannot
    reduce it: the caller then leaves the pair to StructureMatcher)."""
    matrix = np.asarray(matrix, dtype=float)
    volume = abs(float(np.linalg.det(matrix)))
    if not math.isfinite(volume) or volume <= 1e-9:
        return None
    reduced = spglib.niggli_reduce(matrix, eps=1e-5)
    if reduced is None:
        return None
    basis = np.asarray(reduced) / volume ** (1 / 3)
    return invariants_from_basis(basis, nsites, LENGTH_SLACK * (1 + 1e-5 * volume ** (1 / 3)))


def invariants_from_basis(basis: np.ndarray, nsites: int, slack: float) -> LatticeInvariants:
    """The invariants of a unit-volume Niggli ``basis``: a deduplicator's store keeps only
    the basis, the site count and the slack, and gets back the very same floats."""
    lengths = np.linalg.norm(basis, axis=1)
    return LatticeInvariants(nsites, slack, basis, lengths, basis_angles(basis), np.sort(lengths))


def cell_is_primitive_for_matcher(species: list[str]) -> bool:
    """Whether pymatgen's primitive-cell search returns the (Niggli-reduced) cell unchanged.

    ``Structure.get_primitive_structure`` only tries supercell matrices whose determinant
    divides the greatest common divisor of the species' site counts (``get_hnf(num_fu)``
    with ``num_fu = gcd(...)``); with a gcd of 1 there is none, and it returns a copy.
    """
    counts: dict[str, int] = {}
    for s in species:
        counts[s] = counts.get(s, 0) + 1
    return reduce(math.gcd, counts.values(), 0) == 1


def minima_allow(ref: LatticeInvariants, new: LatticeInvariants, ltol: float) -> bool:
    """The cheap necessary condition: ref's successive minima below ``(1 + ltol)`` times new's
    sorted reduced lengths (a basis within the windows bounds the minima from above)."""
    return bool(np.all(ref.minima < (1 + ltol) * new.slack * new.minima))


def may_match(ref: LatticeInvariants, new: LatticeInvariants, ltol: float, atol: float) -> bool:
    """False only when ``fit(ref, new)`` is provably False for lattice reasons (module
    docstring); True means StructureMatcher must decide."""
    if ref.nsites != new.nsites or not minima_allow(ref, new, ltol):
        return False
    hi = (1 + ltol) * new.slack
    found = ref.points(float(new.lengths.max()) * hi)
    if found is None:
        return True
    bases = mapping_bases(found, new.lengths, new.angles, hi, atol + ANGLE_SLACK, first=True)
    return bases is None or len(bases) > 0


def mapping_bases(
    points: tuple[np.ndarray, np.ndarray, np.ndarray],
    lengths: np.ndarray,
    angles: np.ndarray,
    hi: float,
    atol: float,
    first: bool = False,
) -> np.ndarray | None:
    """The integer matrices (rows: the integer coordinates of three lattice vectors among
    ``points``) of every unimodular triple whose lengths lie within a factor ``hi`` of
    ``lengths`` and whose angles lie within ``atol`` degrees of ``angles`` (alpha between the
    second and third, beta the first and third, gamma the first and second): the lattices
    ``Lattice.find_all_mappings`` yields with ``|det| = 1``, when ``hi`` and ``atol`` are its
    ``1 + ltol`` and ``angle_tol``. None when the search would be too large; with ``first``,
    at most one."""
    ints, cart, norms = points
    a, b, c = (np.nonzero((norms < hi * ln) & (norms * hi > ln))[0] for ln in lengths)
    empty = np.zeros((0, 3, 3), dtype=np.int64)
    if len(a) == 0 or len(b) == 0 or len(c) == 0:
        return empty
    if len(a) * len(b) * len(c) > _MAX_TRIPLES:
        return None
    alpha, beta, gamma = angles
    ok_ab = _within(cart, norms, a, b, gamma, atol)
    if not ok_ab.any():
        return empty
    ok_bc = _within(cart, norms, b, c, alpha, atol)
    if not ok_bc.any():
        return empty
    ok_ac = _within(cart, norms, a, c, beta, atol)
    i, j, k = np.nonzero(ok_ab[:, :, None] & ok_bc[None, :, :] & ok_ac[:, None, :])
    mats = np.stack([ints[a[i]], ints[b[j]], ints[c[k]]], axis=1).astype(np.int64)
    mats = mats[np.abs(_int_det(mats[:, 0], mats[:, 1], mats[:, 2])) == 1]
    return mats[:1] if first else mats


def lattice_points(basis: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer coordinates, Cartesian vectors and lengths of every nonzero vector of the
    lattice with row vectors ``basis`` no longer than ``radius`` (none missed: ``|n_i| <=
    radius |b*_i|``); empty where there would be more than ``_MAX_POINTS`` to search."""
    recip = np.linalg.inv(basis).T  # rows: b*_i, with n_i = v . b*_i
    bounds = np.floor(radius * np.linalg.norm(recip, axis=1)).astype(int) + 1
    if np.prod(2 * bounds + 1) > _MAX_POINTS:
        raise ValueError("too many lattice points")
    axes = [np.arange(-b, b + 1) for b in bounds]
    ints = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    cart = ints @ basis
    norms = np.sqrt(np.einsum("ij,ij->i", cart, cart))
    keep = (norms <= radius) & (norms > 0)
    return ints[keep], cart[keep], norms[keep]


def _within(
    cart: np.ndarray, norms: np.ndarray, u: np.ndarray, v: np.ndarray, angle: float, tol: float
) -> np.ndarray:
    """Pairs (u_i, v_j) whose angle lies within ``tol`` degrees of ``angle``, compared as
    cosines (the cosine falls monotonically on [0, 180])."""
    lo = math.cos(math.radians(min(angle + tol, 180.0)))
    up = math.cos(math.radians(max(angle - tol, 0.0)))
    cos = (cart[u] @ cart[v].T) / np.outer(norms[u], norms[v])
    return (cos >= lo - 1e-12) & (cos <= up + 1e-12)


@lru_cache(maxsize=256)
def offset_grid(b0: int, b1: int, b2: int) -> np.ndarray:
    """Every integer vector with ``|n_k| <= b_k``, as floats."""
    return np.array(list(itertools.product(*(range(-b, b + 1) for b in (b0, b1, b2)))), float)


def basis_angles(basis: np.ndarray) -> np.ndarray:
    """alpha, beta, gamma (degrees) of the rows of ``basis``."""
    return np.array([_angle(basis[j], basis[k]) for j, k in ((1, 2), (0, 2), (0, 1))])


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    cos = float(u @ v) / float(np.linalg.norm(u) * np.linalg.norm(v))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def _int_det(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Exact determinants of integer row triples (int64 arithmetic)."""
    a, b, c = (x.astype(np.int64) for x in (a, b, c))
    return (
        a[:, 0] * (b[:, 1] * c[:, 2] - b[:, 2] * c[:, 1])
        - a[:, 1] * (b[:, 0] * c[:, 2] - b[:, 2] * c[:, 0])
        + a[:, 2] * (b[:, 0] * c[:, 1] - b[:, 1] * c[:, 0])
    )
