"""The dedup sieves never overrule StructureMatcher: each is held to pymatgen on random crystals.

Every shortcut in :mod:`gnomon.pipeline.generation.dedup` claims to decide exactly what pymatgen
would: the reduction is pymatgen's own cell, bit for bit; the lattice and site sieves only
reject pairs ``fit`` rejects; a scaled copy is a pair ``fit`` accepts; a cell called primitive
is one the primitive search leaves alone. These tests ask pymatgen the same questions on
perturbed, strained, supercelled and reordered crystals around the matcher's tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.analysis.structure_matcher import SiteOrderedIStructure, StructureMatcher
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation.dedup import Deduplicator
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.generation.lattice_sieve import may_match
from gnomon.pipeline.generation.reduced_cells import (
    CELL_KEY,
    cell_from_doc,
    matcher_reduction,
    no_smaller_cell,
    raw_cell,
    reduced_invariants,
    scaled_copy,
)
from gnomon.pipeline.generation.site_sieve import SiteView, may_fit

MATCHER = StructureMatcher(primitive_cell=True, scale=True, attempt_supercell=False)
PYMATGEN_REDUCTION = StructureMatcher._get_reduced_istructure.__wrapped__
SPECIES = [("Na", "Cl"), ("Mg", "O"), ("Li", "Li")]


def rocksalt(a: float, x: str, y: str) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [x, y], [[0, 0, 0], [0.5] * 3])


def zincblende(a: float, x: str, y: str) -> Structure:
    return Structure.from_spacegroup("F-43m", Lattice.cubic(a), [x, y], [[0, 0, 0], [0.25] * 3])


def layered(a: float, x: str, y: str) -> Structure:
    return Structure(
        Lattice.hexagonal(a * 0.6, a * 1.7),
        [x, y, y],
        [[0, 0, 0], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]],
    )


def cscl(a: float, x: str, y: str) -> Structure:
    return Structure(Lattice.cubic(a * 0.6), [x, y], [[0, 0, 0], [0.5] * 3])


PROTOTYPES = [rocksalt, zincblende, layered, cscl]


@st.composite
def crystals(draw, species=None):
    """A prototype, maybe its primitive cell or a supercell, strained, jiggled, reordered."""
    x, y = species or draw(st.sampled_from(SPECIES))
    s = draw(st.sampled_from(PROTOTYPES))(draw(st.floats(4.0, 6.5)), x, y)
    if draw(st.booleans()):
        s = s.get_primitive_structure()
    if draw(st.integers(0, 3)) == 0:
        s.make_supercell([1, 1, 2])
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    strain = draw(st.sampled_from([0.0, 0.02, 0.1, 0.2]))
    matrix = s.lattice.matrix @ (np.eye(3) + rng.normal(scale=strain / 3, size=(3, 3)))
    noise = draw(st.sampled_from([0.0, 0.05, 0.2, 0.4]))
    frac = s.frac_coords + rng.normal(scale=noise, size=(len(s), 3)) / np.linalg.norm(
        matrix, axis=1
    )
    order = draw(st.permutations(range(len(s))))
    return Structure(Lattice(matrix), [s.species[i] for i in order], frac[list(order)])


def pymatgen_reduced(s: Structure) -> Structure:
    return Structure.from_sites(PYMATGEN_REDUCTION(SiteOrderedIStructure.from_sites(s), True, True))


@pytest.mark.slow  # ~20 s of pymatgen reductions
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crystals())
def test_the_reduced_cell_is_pymatgens_bit_for_bit(s):
    ours, theirs = matcher_reduction(s), pymatgen_reduced(s)
    assert np.array_equal(ours.lattice.matrix, theirs.lattice.matrix)
    assert [site.species for site in ours] == [site.species for site in theirs]
    assert np.array_equal(ours.frac_coords, theirs.frac_coords)


@pytest.mark.slow  # ~10 s of pymatgen primitive-cell searches
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crystals())
def test_a_cell_called_primitive_is_one_the_primitive_search_leaves_alone(s):
    cell = raw_cell(s.as_dict())
    assert cell is not None
    if cell.plain:
        assert len(pymatgen_reduced(s)) == len(s)
    if no_smaller_cell(s.lattice.matrix, s.frac_coords, [x.species_string for x in s]):
        assert len(pymatgen_reduced(s)) == len(s)


def test_a_supercell_is_never_called_primitive():
    s = rocksalt(5.6, "Na", "Cl").get_primitive_structure()
    s.make_supercell([1, 1, 2])
    assert not raw_cell(s.as_dict()).plain
    assert not no_smaller_cell(s.lattice.matrix, s.frac_coords, [x.species_string for x in s])


@pytest.mark.slow  # ~40 s of StructureMatcher calls
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SPECIES).flatmap(lambda sp: st.tuples(crystals(sp), crystals(sp))))
def test_the_sieves_only_reject_pairs_the_matcher_rejects(pair):
    a, b = (matcher_reduction(s) for s in pair)
    fit = MATCHER.fit(a, b, skip_structure_reduction=True)
    assert fit == StructureMatcher().fit(*pair)  # the reduced cells are the matcher's own
    if len(a) != len(b):
        assert not fit
        return
    ia, ib = reduced_invariants(a), reduced_invariants(b)
    if fit:
        assert may_match(ia, ib, 0.2, 5.0)
        assert may_fit(SiteView.of(a), SiteView.of(b), 0.2, 0.3, 5.0)


def test_the_sieves_reject_what_they_are_for():
    # the same fcc lattice, atoms elsewhere: only the site sieve can tell
    rs, zb = (matcher_reduction(p(5.6, "Mg", "O")) for p in (rocksalt, zincblende))
    assert not MATCHER.fit(rs, zb, skip_structure_reduction=True)
    assert may_match(reduced_invariants(rs), reduced_invariants(zb), 0.2, 5.0)
    assert not may_fit(SiteView.of(rs), SiteView.of(zb), 0.2, 0.3, 5.0)
    # another lattice altogether: the lattice sieve
    cs = matcher_reduction(cscl(5.6, "Mg", "O"))
    assert not may_match(reduced_invariants(rs), reduced_invariants(cs), 0.2, 5.0)
    # a true match passes both
    moved = rocksalt(5.9, "Mg", "O")
    moved.translate_sites([0], [0.02, 0.0, 0.0])
    mv = matcher_reduction(moved)
    assert MATCHER.fit(rs, mv, skip_structure_reduction=True)
    assert may_match(reduced_invariants(rs), reduced_invariants(mv), 0.2, 5.0)
    assert may_fit(SiteView.of(rs), SiteView.of(mv), 0.2, 0.3, 5.0)


@pytest.mark.slow  # ~8 s
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crystals(), st.floats(0.7, 1.4))
def test_a_certified_scaled_copy_is_a_match_both_ways(s, factor):
    copy = s.copy()
    copy.scale_lattice(s.volume * factor)
    a, b = raw_cell(s.as_dict()), raw_cell(copy.as_dict())
    if scaled_copy(a, b):
        ra, rb = matcher_reduction(s), matcher_reduction(copy)
        assert MATCHER.fit(ra, rb, skip_structure_reduction=True)
        assert MATCHER.fit(rb, ra, skip_structure_reduction=True)
    jiggled = copy.copy()
    jiggled.translate_sites([0], [0.01, 0.0, 0.0])
    assert not scaled_copy(a, raw_cell(jiggled.as_dict()))


def test_kept_candidates_carry_their_reduced_cell_into_the_database(repo):
    structures = [rocksalt(a, "Na", "Cl") for a in (5.5, 5.6)] + [zincblende(5.6, "Na", "Cl")]
    first = Deduplicator(repository=repo, remember=False)
    kept = first.unique([candidate_from_structure(s, "test") for s in structures])
    assert len(kept) == 2
    repo.add_candidates(kept)
    for c in kept:
        stored = repo.find("candidates", {"id": c.id})
        doc = next(iter(stored))["extra"][CELL_KEY]
        cell = cell_from_doc(doc, c.structure)
        theirs = pymatgen_reduced(Structure.from_dict(c.structure))
        assert np.array_equal(cell.lattice.matrix, theirs.lattice.matrix)
        assert np.array_equal(cell.frac_coords, theirs.frac_coords)
    # a cell is only ever read back for the structure it was reduced from
    other = zincblende(5.9, "Na", "Cl").as_dict()
    assert cell_from_doc(kept[0].extra[CELL_KEY], other) is None
    # a later process compares with the stored cells without reducing them again
    later = Deduplicator(repository=repo, remember=False)
    again = [candidate_from_structure(zincblende(5.8, "Na", "Cl"), "test")]
    assert later.unique(again) == []
    assert later.stats.reductions <= 1  # the newcomer only
