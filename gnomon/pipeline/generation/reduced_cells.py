"""The cells StructureMatcher compares, computed once per structure and kept with it.

``StructureMatcher.fit(a, b, skip_structure_reduction=True)`` compares the matcher's *reduced*
cells (``_get_reduced_structure``: a Niggli cell, then pymatgen's primitive-cell search, which
ends in another Niggli reduction). :mod:`gnomon.pipeline.generation.dedup` reduces each
structure at most once, here, and keeps the result:

* **Exactly pymatgen's reduction.** :func:`matcher_reduction` runs the same pymatgen code
  without the matcher's ``lru_cache`` (whose key compares same-formula structures site by site
  on every lookup, most of the cost in a stream of same-formula candidates), and skips the
  primitive-cell search where it provably returns its input (a *plain* cell, :func:`raw_cell`):

  - ``Structure.get_primitive_structure`` only tries cells ``det`` times smaller for ``det``
    dividing the greatest common divisor of the species' site counts, so with a gcd of 1 it
    returns a copy of the Niggli cell it was given;
  - otherwise :func:`no_smaller_cell` proves that no smaller cell can pass the search's own
    validity test (proof there), so it again returns its input.
* **Kept at store time.** :func:`cell_doc` writes a reduced cell into the candidate's
  ``extra["matcher_cell"]`` when the deduplicator keeps it; :func:`cell_from_doc` reads it back
  bit for bit (the lattice matrix and fractional coordinates are stored as float64 and
  ``Structure`` keeps fractional coordinates as given), so a stored candidate is reduced once
  in its life, not once per process that compares with it.
* **A scaled copy is a match without the matcher** (:func:`scaled_copy`). If two plain cells
  (:func:`plain_cell`) list the same species in the same order at the same fractional
  coordinates and one lattice is a positive multiple of the other, ``fit`` is True in either
  order. Why: neither reduction searches for a primitive cell (gcd 1), so each reduced cell
  is the input re-expressed in a Niggli basis, ``M_a L`` and ``M_b s L`` for integer
  unimodular ``M``. After the matcher scales both to one volume, the vectors ``M_b L`` of the
  first lattice have exactly the lengths and angles of the second cell's basis, so
  ``find_all_mappings`` yields that basis (ratio 1, angle difference 0, ``|det M_b M_a^-1| =
  1``); in it both structures have identical fractional coordinates, the translation taken
  from the anchor site onto its own copy is zero, every distance is zero (to rounding) and
  ``_strict_match`` returns a match. The check allows 1e-9 of rounding in coordinates and
  lattice, against tolerances of order 0.1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from pymatgen.analysis.structure_matcher import SiteOrderedIStructure, StructureMatcher
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation.lattice_sieve import (
    LatticeInvariants,
    cell_is_primitive_for_matcher,
    lattice_invariants,
)

PRIMITIVE_TOL = 0.25  # angstrom: get_primitive_structure's default tolerance, as the matcher uses
CELL_KEY = "matcher_cell"
CELL_VERSION = 1
_COPY_TOL = 1e-9
_reduce_uncached = StructureMatcher._get_reduced_istructure.__wrapped__


@dataclass
class RawCell:
    """A structure dict's lattice, fractional coordinates and site species, read without
    building a pymatgen Structure. ``plain`` when every site holds one element (no oxidation
    state) at full occupancy and the primitive-cell search provably returns the cell (a gcd of
    1, or :func:`no_smaller_cell`): then the matcher's reduction is the Niggli cell of this
    one."""

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
    """True only when ``get_primitive_structure(tolerance=0.25)`` provably returns its input.

    The search returns a cell ``d > 1`` times smaller only if it passes its validity test:
    in that cell's fractional coordinates every site of a species coincides, within
    ``ftol_k = 0.25 / |a_k|`` per coordinate, with exactly ``d`` sites of that species (its
    own group, a clique). A per-coordinate deviation below ``ftol_k`` is a Cartesian one below
    ``3 x 0.25 = 0.75`` angstrom. Were two members of a group images of each other under a
    lattice vector of this cell, they would be distinct sites of one species within 1.5
    angstrom; where no two are (checked first), the ``d`` members of each group sit in the
    ``d`` cosets of the smaller cell's lattice modulo this one, one each. So for every
    nonzero coset ``t`` the first site of any species group has a partner ``j`` with
    ``x_j - x_0`` within 0.75 angstrom of ``t`` (modulo this lattice), and every site ``i`` has
    a partner within 0.75 of ``x_i + t``, hence within 1.5 angstrom of ``x_i + x_j - x_0``.
    The test below looks, for each site ``j`` of the smallest species group, for a site with
    no same-species site within 1.5 angstrom of that shifted position; finding one for every
    ``j`` rules every smaller cell out. Distances are searched over every lattice image that
    could be that close, with a relative margin of 1e-6.
    """
    reach = 6 * PRIMITIVE_TOL * (1 + 1e-6)
    names, inverse = np.unique(np.asarray(species), return_inverse=True)
    members = np.nonzero(inverse == int(np.argmin(np.bincount(inverse))))[0]
    shifts = np.vstack([np.zeros(3), frac[members[1:]] - frac[members[0]]])
    same = inverse[:, None] == inverse[None, :]
    near = _close(frac, shifts, matrix, reach) & same  # [shift, site, site]
    np.fill_diagonal(same, False)
    if (near[0] & same).any():  # two sites of one species within 1.5 angstrom
        return False
    # a shift under which every site has a partner may be a coset of a smaller cell
    return not near[1:].any(axis=2).all(axis=1).any()


def _images(matrix: np.ndarray, reach: float) -> np.ndarray:
    """Cartesian lattice vectors covering every image within ``reach`` of a wrapped difference
    (fractional components in [-1/2, 1/2]): ``|n_k| <= reach |b*_k| + 1/2``."""
    recip = np.linalg.inv(matrix).T
    bounds = np.ceil(reach * np.linalg.norm(recip, axis=1) + 0.5).astype(int)
    return _offsets(*(int(b) for b in bounds)) @ matrix


@lru_cache(maxsize=256)
def _offsets(b0: int, b1: int, b2: int) -> np.ndarray:
    return np.array(list(itertools.product(*(range(-b, b + 1) for b in (b0, b1, b2)))), float)


def _close(frac: np.ndarray, shifts: np.ndarray, matrix: np.ndarray, reach: float) -> np.ndarray:
    """``[s, i, k]``: whether some image of site ``k`` lies within ``reach`` of site ``i``
    moved by ``shifts[s]`` (fractional)."""
    diff = frac[None, None, :, :] - (frac[None, :, None, :] + shifts[:, None, None, :])
    diff -= np.rint(diff)
    cart = (diff @ matrix)[..., None, :] + _images(matrix, reach)
    return (np.einsum("...x,...x->...", cart, cart) <= reach * reach).any(axis=-1)


def matcher_reduction(structure: Structure, plain: bool | None = None) -> Structure:
    """``StructureMatcher._get_reduced_structure(structure, True, niggli=True)``, uncached, with
    the primitive-cell search skipped where it returns its input (module docstring).

    ``plain`` is what :func:`raw_cell` found; None computes the gcd test (only) here."""
    ordered = SiteOrderedIStructure.from_sites(structure)
    if plain is None:
        plain = structure.is_ordered and cell_is_primitive_for_matcher(
            [site.species_string for site in structure]
        )
    if plain:
        reduced = ordered.get_reduced_structure()  # the Niggli step; the primitive one is a copy
    else:
        reduced = _reduce_uncached(ordered, True, True)
    return Structure.from_sites(reduced)


def reduced_invariants(reduced: Structure) -> LatticeInvariants | None:
    """The lattice sieve's invariants of a reduced (primitive, Niggli) cell."""
    return lattice_invariants(reduced.lattice.matrix, len(reduced))


def raw_invariants(cell: RawCell) -> LatticeInvariants | None:
    """The sieve's invariants of a plain cell, read from the cell itself (its lattice is the
    lattice of the matcher's reduced cell, whose site count it shares)."""
    return lattice_invariants(cell.matrix, len(cell.species))


def cell_doc(reduced: Structure) -> dict[str, Any] | None:
    """A reduced cell as stored in a candidate's ``extra`` (None for a disordered one)."""
    if not reduced.is_ordered:
        return None
    return {
        "v": CELL_VERSION,
        "lattice": reduced.lattice.matrix.tolist(),
        "species": [site.species_string for site in reduced],
        "frac": reduced.frac_coords.tolist(),
    }


def cell_from_doc(doc: Any) -> Structure | None:
    """The reduced cell stored by :func:`cell_doc`, bit for bit (None if absent or from
    another version)."""
    if not isinstance(doc, dict) or doc.get("v") != CELL_VERSION:
        return None
    try:
        return Structure(Lattice(doc["lattice"]), doc["species"], doc["frac"])
    except (KeyError, TypeError, ValueError):
        return None


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
