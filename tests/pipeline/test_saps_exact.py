"""SAPS fast path: the same outcomes as the reference path and as brute force, on small cases."""

from __future__ import annotations

import itertools

import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation.identity import structure_hash
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.templates import make_template, prototype_templates


def rock_salt() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
    )


def layered_knacl2() -> Structure:
    """CuAu-type K/Na ordering on the rock-salt cation sites (already holds K and Na)."""
    s = rock_salt()
    s.replace(0, "K")
    s.replace(1, "K")
    return s


def perovskite() -> Structure:
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0.5] * 3, [0, 0, 0], [0.5, 0, 0]]
    )


def both(template, **settings):
    fast = list(SAPSGenerator(method="fast", **settings).generate([template]))
    ref = list(SAPSGenerator(method="reference", **settings).generate([template]))
    return fast, ref


def assert_same_outcomes(fast, ref):
    """Same outcomes in the same order: canonical identities, structures and provenance."""
    assert len(fast) == len(ref) > 0
    assert [structure_hash(Structure.from_dict(c.structure)) for c in fast] == [c.id for c in ref]
    for f, r in zip(fast, ref, strict=True):
        assert Structure.from_dict(f.structure) == Structure.from_dict(r.structure)
        for name in (
            "formula",
            "reduced_formula",
            "chemsys",
            "nsites",
            "template_id",
            "substitution",
            "replaced_fraction",
            "fingerprint",
            "extra",
        ):
            assert getattr(f, name) == getattr(r, name), name
    assert len({c.id for c in fast}) == len(fast)  # the fast ids tell outcomes apart


def brute_force_distinct(template: Structure, a: str, b: str, skip_full: bool) -> list[Structure]:
    """Every subset of the A sites replaced by B, grouped by StructureMatcher."""
    sites = [i for i, s in enumerate(template) if s.specie.symbol == a]
    outcomes = []
    for k in range(1, len(sites) + (0 if skip_full else 1)):
        for subset in itertools.combinations(sites, k):
            s = template.copy()
            for i in subset:
                s.replace(i, b)
            outcomes.append(s)
    return [group[0] for group in StructureMatcher().group_structures(outcomes)]


def assert_matches_brute_force(outputs, expected: list[Structure]):
    matcher = StructureMatcher()
    got = [Structure.from_dict(c.structure) for c in outputs]
    assert len(got) == len(expected)
    for e in expected:
        assert sum(matcher.fit(e, g) for g in got) == 1


def test_partial_substitution_of_rock_salt_sites_equals_reference_and_brute_force():
    t = make_template("rs", rock_salt(), "test")
    fast, ref = both(t, elements=("Na", "K", "Cl"), partial_mode="sites")
    assert_same_outcomes(fast, ref)
    assert_matches_brute_force(fast, brute_force_distinct(rock_salt(), "Na", "K", skip_full=False))


def test_partial_substitution_onto_an_element_already_present_equals_brute_force():
    # Na -> K where K is already on half the cation sites: only partial outcomes are new
    t = make_template("knacl2", layered_knacl2(), "test")
    fast, ref = both(t, elements=("Na", "K", "Cl"), partial_mode="sites")
    assert_same_outcomes(fast, ref)
    assert all(c.replaced_fraction < 1 for c in fast)
    na_to_k = [c for c in fast if c.substitution == {"Na": "K"}]
    assert_matches_brute_force(
        na_to_k, brute_force_distinct(layered_knacl2(), "Na", "K", skip_full=True)
    )


def test_perovskite_supercell_b_sites_equal_reference_and_brute_force():
    t = make_template("pv", perovskite(), "test")
    settings = dict(elements=("Sr", "Ti", "Zr", "O"), partial_mode="sites", supercell=(2, 2, 1))
    fast, ref = both(t, **settings)
    assert_same_outcomes(fast, ref)
    ti_to_zr = [c for c in fast if c.substitution == {"Ti": "Zr"}]
    assert_matches_brute_force(
        ti_to_zr, brute_force_distinct(perovskite() * (2, 2, 1), "Ti", "Zr", skip_full=False)
    )


@pytest.mark.slow  # the reference path's spglib standardization: ~20 s on 2 loaded cores
def test_wyckoff_unions_and_two_species_maps_on_prototypes_equal_reference():
    protos = [t for t in prototype_templates(max_sites=4) if hasattr(t, "structure")][:12]
    settings = dict(elements=("Li", "Mn", "O"), max_species=2)
    fast = list(SAPSGenerator(method="fast", **settings).generate(protos))
    ref = list(SAPSGenerator(method="reference", **settings).generate(protos))
    assert_same_outcomes(fast, ref)
    # the fast path with identity="structure" gives the reference ids themselves
    again = list(SAPSGenerator(method="fast", identity="structure", **settings).generate(protos))
    assert [c.id for c in again] == [c.id for c in ref]


def test_fast_ids_are_stable_across_runs_and_name_the_structure_not_the_enumeration():
    t = make_template("rs", rock_salt(), "test")
    first = [
        c.id for c in SAPSGenerator(elements=("Na", "K", "Cl"), partial_mode="sites").generate([t])
    ]
    second = [
        c.id for c in SAPSGenerator(elements=("Na", "K", "Cl"), partial_mode="sites").generate([t])
    ]
    assert first == second
    # a different substituent is a different structure, hence a different id
    rb = [
        c.id
        for c in SAPSGenerator(
            elements=("Na", "Rb", "Cl"), partial_mode="sites", threshold=0.0
        ).generate([t])
    ]
    assert not set(rb) & set(first)


def test_an_outcome_gets_the_same_fast_id_whatever_else_the_run_could_substitute():
    t = make_template("rs", rock_salt(), "test")
    narrow = {
        c.reduced_formula: c.id
        for c in SAPSGenerator(elements=("Na", "K", "Cl"), partial_mode="sites").generate([t])
    }
    wide = {
        c.reduced_formula: c.id
        for c in SAPSGenerator(
            elements=("Na", "K", "Rb", "Cl", "Br"), partial_mode="sites", within_elements=False
        ).generate([t])
    }
    assert narrow and all(wide[f] == cid for f, cid in narrow.items())
