"""The cells StructureMatcher compares, computed once per structure and kept with it.

``StructureMatcher.fit(a, b, skip_structure_reduction=True)`` compares the matcher's *reduced*
cells (``_get_reduced_structure``: a Niggli cell, then pymatgen's primitive-cell search, which
ends in another Niggli reduction). :mod:`gnomon.pipeline.generation.dedup` reduces each
structure at most once, here, and keeps the result:

* **Exactly pymatgen's reduction.** :func:`matcher_reduction` runs the same pymatgen code
  without the matcher's ``lru_cache`` (whose key compares same-formula structures site by site
  on every lookup, most of the cost in a stream of same-formula candidates), and skips the
  primitive-cell search where it provably returns the Niggli cell it is given:

  - ``Structure.get_primitive_structure`` only tries cells ``det`` times smaller for ``det``
    dividing the greatest common divisor of the species' site counts, so with a gcd of 1 it
    returns a copy of its input (a *plain* cell, :func:`raw_cell`: its site count is known
    before anything is reduced);
  - otherwise, where :func:`no_smaller_cell` finds (on the cell as given, basis free) that no
    smaller cell can pass the search's validity test, the cell is plain too;
  - otherwise :func:`no_valid_hnf` runs the search's own validity test, slightly widened, on
    every cell it could try from the Niggli cell, and where none can pass it again returns its
    input.
* **Kept at store time.** :func:`cell_doc` writes a reduced cell into the candidate's
  ``extra["matcher_cell"]`` when the deduplicator keeps it, with a hash of the structure it
  was reduced from; :func:`cell_from_doc` reads it back, for that structure only, bit for
  bit (the lattice matrix and fractional coordinates are stored as float64 and ``Structure``
  keeps fractional coordinates as given), so a stored candidate is reduced once in its life,
  not once per process that compares with it.
* **A scaled copy is a match without the matcher** (:func:`scaled_copy`). If two plain cells
  (:func:`raw_cell`) list the same species in the same order at the same fractional
  coordinates and one lattice is a positive multiple of the other, ``fit`` is True in either
  order. Why: neither reduction searches for a primitive cell (or the search returns its
  input), so each reduced cell is the input re-expressed in a Niggli basis, ``M_a L`` and
  ``M_b s L`` for integer unimodular ``M``. After the matcher scales both to one volume, the
  vectors ``M_b L`` of the first lattice have exactly the lengths and angles of the second
  cell's basis, so
  ``find_all_mappings`` yields that basis (ratio 1, angle difference 0, ``|det M_b M_a^-1| =
  1``); in it both structures have identical fractional coordinates, the translation taken
  from the anchor site onto its own copy is zero, every distance is zero (to rounding) and
  ``_strict_match`` returns a match. The check allows 1e-9 of rounding in coordinates and
  lattice, against tolerances of order 0.1.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass
from functools import lru_cache, reduce
from typing import Any

import numpy as np
import orjson
from pymatgen.analysis.structure_matcher import SiteOrderedIStructure
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation.lattice_sieve import (
    LatticeInvariants,
    cell_is_primitive_for_matcher,
    lattice_invariants,
    offset_grid,
)

PRIMITIVE_TOL = 0.25  # angstrom: get_primitive_structure's default tolerance, as the matcher uses
CELL_KEY = "matcher_cell"
CELL_VERSION = 1
_COPY_TOL = 1e-9


@dataclass
class RawCell:
    """A structure dict's lattice, fractional coordinates and site species, read without
    building a pymatgen Structure. ``plain`` when every site holds one element (no oxidation
    state) at full occupancy and the primitive-cell search provably returns it (a gcd of 1,
    or :func:`no_smaller_cell`): then the matcher's reduction is the Niggli cell of this one,
    with as many sites."""

    matrix: np.ndarray
    frac: np.ndarray
    species: list[str]
    plain: bool


def raw_cell(structure: dict[str, Any]) -> RawCell | None:
    """The cell of a structure dict, or None where the dict is not the plain layout
    ``Structure.as_dict`` writes (the caller then parses it with pymatgen)."""
    try:
        matrix = np.asarray(structure["lattice"]["matrix"], dtype=float).reshape(3, 3)
        sites = structure["sites"]
        frac = np.asarray([site["abc"] for site in sites], dtype=float).reshape(-1, 3)
        species, simple = [], True
        for site in sites:
            occupants = site["species"]
            first = occupants[0]
            simple &= len(occupants) == 1 and first.get("occu", 1) == 1
            simple &= first.get("oxidation_state") in (None, 0)
            species.append(first["element"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    plain = bool(simple) and len(species) > 0
    if plain and not cell_is_primitive_for_matcher(species):
        plain = no_smaller_cell(matrix, frac, species)
    return RawCell(matrix, frac, species, plain)


def no_smaller_cell(matrix: np.ndarray, frac: np.ndarray, species: list[str]) -> bool:
    """True only when ``get_primitive_structure(tolerance=0.25)`` provably returns its input,
    whatever basis the cell is given in (so it can be asked of a cell before any reduction).

    The search returns a cell ``d > 1`` times smaller only if it passes its validity test
    (:func:`no_valid_hnf`): in that cell's fractional coordinates every site of a species
    coincides, within ``0.25 / |a_k|`` per coordinate, with exactly ``d`` sites of that
    species. A per-coordinate deviation below ``0.25 / |a_k|`` is a Cartesian one below
    ``3 x 0.25 = 0.75`` angstrom. Were two members of a group images of each other under a
    lattice vector of this cell, they would be distinct sites of one species within 1.5
    angstrom; where no two are (checked first), the ``d`` members of each group sit in the
    ``d`` cosets of the smaller cell's lattice modulo this one, one each. So for every nonzero
    coset ``t`` the first site of any species has a partner ``j`` with ``x_j - x_0`` within 0.75
    angstrom of ``t`` (modulo this lattice), and every site ``i`` has a partner within 0.75 of
    ``x_i + t``, hence within 1.5 angstrom of ``x_i + x_j - x_0``. The test looks, for each
    site ``j`` of the smallest species group, for a site with no same-species site within 1.5
    angstrom of that shifted position; finding one for every ``j`` rules every smaller cell
    out. Distances are searched over every lattice image that could be that close, with a
    relative margin of 1e-6.
    """
    reach = 6 * PRIMITIVE_TOL * (1 + 1e-6)
    _, inverse = np.unique(np.asarray(species), return_inverse=True)
    members = np.nonzero(inverse == int(np.argmin(np.bincount(inverse))))[0]
    shifts = np.vstack([np.zeros(3), frac[members[1:]] - frac[members[0]]])
    same = inverse[:, None] == inverse[None, :]
    near = _close(frac, shifts, matrix, reach) & same  # [shift, site, site]
    np.fill_diagonal(same, False)
    if (near[0] & same).any():  # two sites of one species within 1.5 angstrom
        return False
    # a shift under which every site has a partner may be a coset of a smaller cell
    return not near[1:].any(axis=2).all(axis=1).any()


def _close(frac: np.ndarray, shifts: np.ndarray, matrix: np.ndarray, reach: float) -> np.ndarray:
    """``[s, i, k]``: whether some image of site ``k`` lies within ``reach`` of site ``i``
    moved by ``shifts[s]`` (fractional). Images: every lattice vector that can bring a
    wrapped difference (components in [-1/2, 1/2]) that close, ``|n_k| <= reach |b*_k| +
    1/2``."""
    recip = np.linalg.inv(matrix).T
    bounds = np.ceil(reach * np.linalg.norm(recip, axis=1) + 0.5).astype(int)
    images = offset_grid(*(int(b) for b in bounds)) @ matrix
    diff = frac[None, None, :, :] - (frac[None, :, None, :] + shifts[:, None, None, :])
    diff -= np.rint(diff)
    cart = (diff @ matrix)[..., None, :] + images
    return (np.einsum("...x,...x->...", cart, cart) <= reach * reach).any(axis=-1)


def no_valid_hnf(matrix: np.ndarray, frac: np.ndarray, species: list[str]) -> bool:
    """True only when ``get_primitive_structure(tolerance=0.25)`` provably returns its input
    (the cell with lattice rows ``matrix``: its tolerances depend on this basis, so give it
    the Niggli cell the matcher's search starts from).

    The search tries every supercell matrix ``m`` in Hermite normal form whose determinant
    ``d > 1`` divides the gcd of the species' site counts (``get_hnf``), keeps those whose
    rows of ``m^-1`` pass an approximate prefilter, and returns a smaller cell for the first
    that passes its validity test: for every species, with ``f`` the sites' fractional
    coordinates in the smaller cell (``f_old @ m``), ``close[i, j]`` when every component of
    ``f_j - f_i`` is within ``0.25 / |a_k|`` of an integer (``a_k`` the smaller cell's
    vectors), ``non_nbrs[i, j]`` when some component of the old fractional difference is more
    than twice ``0.25 / |old a_k|`` from an integer (and on the diagonal), and every column of
    ``close & non_nbrs`` must hold exactly ``d`` sites (and form cliques). If none passes it
    returns a copy of its input.

    This runs the same test on *every* such ``m`` (no prefilter), asking only for columns of
    at least ``d`` sites, with ``close`` and ``non_nbrs`` both widened by a relative 1e-6: a
    superset of the matrices that can pass. When it is empty the search returns its input.
    """
    labels = np.asarray(species)
    _, inverse = np.unique(labels, return_inverse=True)
    num_fu = reduce(math.gcd, np.bincount(inverse).tolist(), 0)
    hnfs, dets = _hnfs(num_fu)
    if len(hnfs) == 0:
        return True
    widen = 1 + 1e-6
    super_ftol = PRIMITIVE_TOL / np.linalg.norm(matrix, axis=1)
    new = np.linalg.inv(hnfs) @ matrix  # (H, 3, 3): the smaller cells' vectors
    ftol = widen * PRIMITIVE_TOL / np.linalg.norm(new, axis=2)  # (H, 3)
    possible = np.ones(len(hnfs), dtype=bool)
    for g in range(inverse.max() + 1):
        f = frac[inverse == g]
        old = np.abs(_wrap(f[None, :, :] - f[:, None, :]))
        non_nbrs = np.any(old > 2 * super_ftol / widen, axis=-1)
        np.fill_diagonal(non_nbrs, True)
        fnew = f @ hnfs.astype(float)  # (H, n, 3)
        fd = np.abs(_wrap(fnew[:, None, :, :] - fnew[:, :, None, :]))
        close = np.all(fd < ftol[:, None, None, :], axis=-1)  # (H, n, n)
        columns = np.sum(close & non_nbrs[None], axis=1)
        possible &= np.all(columns >= dets[:, None], axis=1)
        if not possible.any():
            return True
    return False


def _wrap(x: np.ndarray) -> np.ndarray:
    return x - np.round(x)


@lru_cache(maxsize=64)
def _hnfs(num_fu: int) -> tuple[np.ndarray, np.ndarray]:
    """Every matrix ``get_primitive_structure``'s ``get_hnf(num_fu)`` yields, and its
    determinant."""
    out: list[list[list[int]]] = []
    dets: list[int] = []
    for det in range(2, num_fu + 1):
        if num_fu % det:
            continue
        for a in (x for x in range(1, det + 1) if det % x == 0):
            for e in (x for x in range(1, det // a + 1) if (det // a) % x == 0):
                g = det // a // e
                for b, c, f in itertools.product(range(a), range(a), range(e)):
                    out.append([[a, b, c], [0, e, f], [0, 0, g]])
                    dets.append(det)
    return np.array(out, dtype=np.int64).reshape(-1, 3, 3), np.array(dets, dtype=np.int64)


def matcher_reduction(structure: Structure, plain: bool | None = None) -> Structure:
    """``StructureMatcher._get_reduced_structure(structure, True, niggli=True)``, uncached, with
    the primitive-cell search skipped where it returns its input (module docstring).

    ``plain`` is what :func:`raw_cell` found; None computes the gcd test (only) here."""
    ordered = SiteOrderedIStructure.from_sites(structure)
    if plain is None:
        plain = structure.is_ordered and cell_is_primitive_for_matcher(
            [site.species_string for site in structure]
        )
    reduced = ordered.get_reduced_structure()  # the Niggli step, as _get_reduced_istructure
    if not plain and not no_valid_hnf(
        reduced.lattice.matrix, reduced.frac_coords, [site.species_string for site in reduced]
    ):
        reduced = reduced.get_primitive_structure()  # its primitive step, where it may act
    return Structure.from_sites(reduced)


def reduced_invariants(reduced: Structure) -> LatticeInvariants | None:
    """The lattice sieve's invariants of a reduced (primitive, Niggli) cell."""
    return lattice_invariants(reduced.lattice.matrix, len(reduced))


def doc_invariants(doc: Any, structure: dict[str, Any]) -> LatticeInvariants | None:
    """The sieve's invariants of the reduced cell :func:`cell_doc` stored for ``structure``,
    read off the stored lattice without building the cell: the same matrix, bit for bit, as
    :func:`cell_from_doc`'s ``reduced.lattice.matrix`` (None where that would be None)."""
    if not isinstance(doc, dict) or doc.get("v") != CELL_VERSION:
        return None
    try:
        if doc["of"] != structure_digest(structure):
            return None
        return lattice_invariants(np.array(doc["lattice"], dtype=float), len(doc["species"]))
    except (KeyError, TypeError, ValueError):
        return None


def raw_invariants(cell: RawCell) -> LatticeInvariants | None:
    """The sieve's invariants of a plain cell, read from the cell itself (its lattice is the
    lattice of the matcher's reduced cell, whose site count it shares)."""
    return lattice_invariants(cell.matrix, len(cell.species))


def cell_doc(reduced: Structure, structure: dict[str, Any]) -> dict[str, Any] | None:
    """The reduced cell of ``structure`` as stored in a candidate's ``extra`` (None for a
    disordered one). It names the structure it was reduced from (:func:`structure_digest`),
    so a record whose structure was edited afterwards is reduced afresh."""
    if not reduced.is_ordered:
        return None
    return {
        "v": CELL_VERSION,
        "of": structure_digest(structure),
        "lattice": reduced.lattice.matrix.tolist(),
        "species": [site.species_string for site in reduced],
        "frac": reduced.frac_coords.tolist(),
    }


def cell_from_doc(doc: Any, structure: dict[str, Any]) -> Structure | None:
    """The reduced cell stored by :func:`cell_doc` for this very ``structure``, bit for bit
    (None if absent, from another version, or reduced from another structure)."""
    if not isinstance(doc, dict) or doc.get("v") != CELL_VERSION:
        return None
    try:
        if doc["of"] != structure_digest(structure):
            return None
        return Structure(Lattice(doc["lattice"]), doc["species"], doc["frac"])
    except (KeyError, TypeError, ValueError):
        return None


def structure_digest(structure: dict[str, Any]) -> str:
    """A hash of what the matcher reads of a structure dict: lattice, site species and
    fractional coordinates."""
    try:
        payload = [
            structure["lattice"]["matrix"],
            [[site["species"], site["abc"]] for site in structure["sites"]],
        ]
    except (KeyError, TypeError):
        return ""
    return hashlib.sha1(orjson.dumps(payload)).hexdigest()


def scaled_copy(a: RawCell, b: RawCell) -> bool:
    """Whether ``fit`` provably matches ``a`` and ``b`` (in either order) because one is the
    other with its lattice scaled (module docstring)."""
    if not (a.plain and b.plain) or a.species != b.species:
        return False
    diff = a.frac - b.frac
    if np.abs(diff - np.round(diff)).max(initial=0.0) > _COPY_TOL:
        return False
    scale = np.linalg.norm(b.matrix) / np.linalg.norm(a.matrix)
    return bool(np.abs(a.matrix * scale - b.matrix).max() <= _COPY_TOL * np.abs(b.matrix).max())
