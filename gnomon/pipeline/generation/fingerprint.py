"""The dedup key: a cheap text key that every pair of structures StructureMatcher matches shares.

Deduplication looks up the stored records that could match a new candidate through an indexed
column, then lets StructureMatcher decide within that bucket. For the result to be *exact*
(never a duplicate let through that StructureMatcher would catch), the key must be a function
that two matched structures provably share at every tolerance. The key is the **reduced
formula** of the structure (``Composition.reduced_formula``), stored on every candidate and
entry in the indexed ``reduced_formula`` column (and, for candidates, in ``fingerprint``).

Why the key cannot separate structures StructureMatcher matches (the matcher gnomon
configures: default :class:`~pymatgen.analysis.structure_matcher.SpeciesComparator`, no
ignored species, ``attempt_supercell=False``, ``allow_subset=False``, any ``ltol``/``stol``/
``angle_tol``/``scale``/``primitive_cell``):

1. ``StructureMatcher.fit(s1, s2)`` first compares ``comparator.get_hash(s.composition)`` and
   returns False when the two differ (``if not self._subset and not hash_match: return
   False``). ``SpeciesComparator.get_hash`` is ``composition.fractional_composition``. No
   tolerance enters this test, so every matched pair has equal fractional compositions.
2. The fractional composition fixes every element's share ``n_X / N``. The reduced formula of
   an ordered structure (integer site counts) divides the counts by their greatest common
   divisor, which is a function of the shares alone (``n_X / gcd = (n_X / N) / (gcd / N)`` and
   ``gcd / N`` is the smallest ``g`` making every ``share / g`` an integer). Equal fractional
   compositions therefore give equal reduced formulas. (Oxidation states, where present, are
   dropped by ``reduced_formula``: that merges buckets, never splits them.)

So ``fit(s1, s2) => key(s1) == key(s2)`` for every tolerance: a bucket lookup by key misses
nothing. The symmetry-based key used before (``"LiMnO2|166|1"``: space group at
``symprec=0.1`` and formula units per primitive cell) could differ for structures the matcher
matches (a distortion below ``stol`` but above ``symprec`` changes the space group), and let
duplicates through (75 kept where an exhaustive ``group_structures`` keeps 66, on the bench).

Within a bucket :mod:`gnomon.pipeline.generation.dedup` skips pairs by one more necessary
condition the
matcher applies itself: with ``attempt_supercell=False`` the two reduced (primitive, Niggli)
cells must hold the same number of sites (``_strict_match`` returns None when
``mask.shape[0] != mask.shape[1]``). That count is computed, by the matcher's own reduction,
only for candidates whose bucket is not empty.
"""

from __future__ import annotations

from pymatgen.core import Composition, Structure

FINGERPRINT_VERSION = "2"
# kept for callers that passed a symmetry tolerance to the old, symmetry-based fingerprint
FINGERPRINT_SYMPREC = 0.1


def dedup_key(composition: Composition | Structure) -> str:
    """The bucket key of a structure or composition: its reduced formula (see the module
    docstring for why StructureMatcher-matched structures always share it)."""
    if isinstance(composition, Structure):
        composition = composition.composition
    return composition.reduced_formula


def fingerprint(structure: Structure, symprec: float | None = None) -> str:
    """The key stored in a candidate's indexed ``fingerprint`` field: :func:`dedup_key`.

    ``symprec`` is accepted and ignored (the key no longer depends on symmetry)."""
    return dedup_key(structure)


def formula_of(fp: str) -> str:
    """The reduced formula a fingerprint starts with (old ``"LiMnO2|166|1"`` keys included)."""
    return fp.split("|", 1)[0]
