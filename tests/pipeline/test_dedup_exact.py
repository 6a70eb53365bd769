"""Dedup is exact with respect to StructureMatcher: it keeps group_structures' representatives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation.dedup import Deduplicator, dedup_structures
from gnomon.pipeline.generation.fingerprint import dedup_key
from gnomon.pipeline.generation.identity import candidate_from_structure

PROTOTYPES = {
    "rocksalt": lambda a, x, y: Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), [x, y], [[0, 0, 0], [0.5] * 3]
    ),
    "cscl": lambda a, x, y: Structure(Lattice.cubic(a * 0.6), [x, y], [[0, 0, 0], [0.5] * 3]),
    "zincblende": lambda a, x, y: Structure.from_spacegroup(
        "F-43m", Lattice.cubic(a), [x, y], [[0, 0, 0], [0.25] * 3]
    ),
    "layered": lambda a, x, y: Structure(
        Lattice.tetragonal(a * 0.7, a * 1.1),
        [x, y, y],
        [[0, 0, 0], [0.5, 0.5, 0.3], [0.5, 0.5, 0.7]],
    ),
}


@st.composite
def structures(draw):
    """Small crystals of a few prototypes and species, with volume changes, supercells, site
    orders and displacements around the matcher's tolerances: many true duplicates, some
    near misses."""
    name = draw(st.sampled_from(sorted(PROTOTYPES)))
    x, y = draw(st.sampled_from([("Na", "Cl"), ("K", "Cl"), ("Na", "Br")]))
    a = draw(st.floats(4.5, 6.5))
    s = PROTOTYPES[name](a, x, y)
    if draw(st.booleans()):
        s = s.get_primitive_structure()
    if draw(st.integers(0, 3)) == 0:
        s.make_supercell([1, 1, 2])
    noise = draw(st.sampled_from([0.0, 0.0, 0.05, 0.3]))
    if noise:
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        s = Structure(
            s.lattice,
            s.species,
            s.cart_coords + rng.normal(scale=noise, size=(len(s), 3)),
            coords_are_cartesian=True,
        )
    order = draw(st.permutations(range(len(s))))
    return Structure.from_sites([s[i] for i in order])


def representatives(batch: list[Structure]) -> list[int]:
    """group_structures' first member of each group, in input order (its grouping is greedy
    over representatives, taken in input order within a composition)."""
    ids = {id(s): i for i, s in enumerate(batch)}
    return sorted(ids[id(g[0])] for g in StructureMatcher().group_structures(batch))


@pytest.mark.slow  # ~20 s of StructureMatcher calls
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(structures(), min_size=2, max_size=5))
def test_dedup_keeps_exactly_what_group_structures_keeps(batch):
    assert dedup_structures(batch) == representatives(batch)
    kept = Deduplicator().unique([candidate_from_structure(s, "test") for s in batch])
    matcher = StructureMatcher()
    ks = [Structure.from_dict(c.structure) for c in kept]
    assert len(kept) == len(representatives(batch))
    # no two kept candidates are one structure
    assert not any(matcher.fit(a, b) for i, a in enumerate(ks) for b in ks[i + 1 :])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(structures(), min_size=2, max_size=2))
def test_matched_structures_share_the_dedup_key(pair):
    a, b = pair
    if StructureMatcher().fit(a, b):
        assert dedup_key(a) == dedup_key(b)


def test_a_distortion_that_changes_the_space_group_is_still_a_duplicate():
    # The old symmetry fingerprint (space group at symprec=0.1) put these two in different
    # buckets and kept both; StructureMatcher (stol=0.3) calls them one structure.
    s = PROTOTYPES["rocksalt"](5.64, "Na", "Cl")
    moved = s.copy()
    moved.translate_sites([0], [0.03, 0.0, 0.0])
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    assert (
        SpacegroupAnalyzer(s, 0.1).get_space_group_number()
        != SpacegroupAnalyzer(moved, 0.1).get_space_group_number()
    )
    assert StructureMatcher().fit(s, moved)
    assert dedup_structures([s, moved]) == [0]
