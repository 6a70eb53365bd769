"""A template cell's symmetry as permutations of its sites, and the site subsets it tells apart.

SAPS enumerates partial substitutions up to the template's symmetry: two choices of replaced
sites related by an operation of the cell (lattice translations of a supercell included) are
one structure. Working on integer permutations rather than on Structures makes that a few
array operations per outcome.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

logger = logging.getLogger(__name__)

_COMBO_CHUNK = 2048


# -- symmetry of the template cell -------------------------------------------------------------
def site_permutations(structure: Structure, symprec: float = 0.01) -> np.ndarray:
    """The template's symmetry operations as site permutations, shape ``(n_ops, n_sites)``.

    Row ``g`` maps site ``i`` to site ``perm[g, i]``. Lattice translations that are symmetry
    operations of a supercell are included (spglib returns them).
    """
    identity = np.arange(len(structure))[None, :]
    try:
        ops = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_operations(
            cartesian=False
        )
    except (ValueError, TypeError, RuntimeError) as exc:
        logger.debug("no symmetry for %s (%s); using the identity", structure.formula, exc)
        return identity
    return permutations_from_ops(structure, ops, symprec)


def permutations_from_ops(structure: Structure, ops, symprec: float = 0.01) -> np.ndarray:
    """Fractional symmetry operations as site permutations (see :func:`site_permutations`)."""
    n = len(structure)
    identity = np.arange(n)[None, :]
    frac = structure.frac_coords
    species = np.array([s.species_string for s in structure])
    lattice = structure.lattice.matrix
    perms = []
    for op in ops:
        image = frac @ op.rotation_matrix.T + op.translation_vector
        diff = image[:, None, :] - frac[None, :, :]
        diff -= np.round(diff)
        dist = np.linalg.norm(diff @ lattice, axis=-1)
        perm = dist.argmin(axis=1)
        if dist[np.arange(n), perm].max() > 10 * symprec + 1e-3 or not np.array_equal(
            species[perm], species
        ):
            continue  # an operation spglib found at a looser tolerance than the sites allow
        if len(set(perm.tolist())) == n:
            perms.append(perm)
    return np.unique(np.array(perms), axis=0) if perms else identity


def site_orbits(perms: np.ndarray, sites: Sequence[int]) -> list[list[int]]:
    """The orbits (Wyckoff orbits of the cell) that ``sites`` fall into, each sorted."""
    remaining = set(sites)
    orbits = []
    for i in sorted(sites):
        if i not in remaining:
            continue
        orbit = sorted(set(perms[:, i].tolist()))
        orbits.append(orbit)
        remaining -= set(orbit)
    return orbits


def distinct_subsets(
    perms: np.ndarray, sites: Sequence[int], sizes: Iterable[int] | None = None
) -> Iterator[tuple[int, ...]]:
    """One subset of ``sites`` per class of subsets related by the permutation group.

    For each size, every combination is mapped through every operation; the class is named by
    its smallest bitmask and the first combination of each class (lexicographic) is yielded.
    ``sites`` must be closed under the group (all sites of one element).
    """
    sites = sorted(sites)
    n = len(sites)
    if n > 62:
        raise ValueError("at most 62 sites can be enumerated")
    local = {s: k for k, s in enumerate(sites)}
    group = np.array([[local[p[s]] for s in sites] for p in perms], dtype=np.int64)  # (G, n)
    weights = np.left_shift(np.int64(1), np.arange(n, dtype=np.int64))
    for k in sizes if sizes is not None else range(1, n + 1):
        seen: set[int] = set()
        combos = itertools.combinations(range(n), k)
        while block := list(itertools.islice(combos, _COMBO_CHUNK)):
            arr = np.array(block, dtype=np.int64)  # (C, k)
            images = group[:, arr]  # (G, C, k)
            canon = weights[images].sum(axis=2).min(axis=0)  # (C,)
            for combo, key in zip(block, canon.tolist(), strict=True):
                if key not in seen:
                    seen.add(key)
                    yield tuple(sites[j] for j in combo)
