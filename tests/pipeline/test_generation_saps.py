"""SAPS: hand-checked substitution counts on rock-salt and perovskite templates."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.site_symmetry import (
    distinct_subsets,
    site_orbits,
    site_permutations,
)
from gnomon.pipeline.generation.substitution import substitution_probability
from gnomon.pipeline.generation.templates import SkippedTemplate, make_template, prototype_templates


def rock_salt() -> Structure:
    """NaCl, conventional cell: 4 Na on 4a, 4 Cl on 4b."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def perovskite() -> Structure:
    """Cubic SrTiO3, 5 atoms."""
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]]
    )


def structures(candidates):
    return [Structure.from_dict(c.structure) for c in candidates]


def assert_pairwise_distinct(candidates):
    matcher = StructureMatcher()
    ss = structures(candidates)
    for (i, a), (j, b) in itertools.combinations(enumerate(ss), 2):
        assert not matcher.fit(a, b), f"outputs {i} and {j} are the same structure"


def test_rock_salt_conventional_cell_gives_quarter_half_three_quarter_and_full():
    # K for Na on the 4 cation sites of the conventional cell, up to Fm-3m: every choice of
    # 1, 2 or 3 sites is equivalent (the 2-site choice is the CuAu-type layering), so one
    # outcome per fraction; Cl has no allowed substituent among the elements given.
    saps = SAPSGenerator(elements=("Na", "K", "Cl"), partial_mode="sites")
    out = list(saps.generate([make_template("rs", rock_salt(), "test")]))
    assert [(c.substitution, c.replaced_fraction) for c in out] == [
        ({"Na": "K"}, 0.25),
        ({"Na": "K"}, 0.5),
        ({"Na": "K"}, 0.75),
        ({"Na": "K"}, 1.0),
    ]
    assert [c.reduced_formula for c in out] == ["KNa3Cl4", "KNaCl2", "K3NaCl4", "KCl"]
    assert_pairwise_distinct(out)
    # the half substitution is the layered (tetragonal) ordering
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    half = Structure.from_dict(out[1].structure)
    assert SpacegroupAnalyzer(half).get_crystal_system() == "tetragonal"


def test_rock_salt_in_wyckoff_mode_only_substitutes_whole_orbits():
    saps = SAPSGenerator(elements=("Na", "K", "Cl"), partial_mode="wyckoff")
    out = list(saps.generate([make_template("rs", rock_salt(), "test")]))
    assert [(c.substitution, c.replaced_fraction) for c in out] == [({"Na": "K"}, 1.0)]


def test_perovskite_2x2x2_b_site_decorations_match_the_cube_colouring_count():
    # the 8 Ti of a 2x2x2 cubic perovskite form a cube whose symmetry the supercell keeps;
    # 2-colourings of a cube's vertices up to its 48 symmetries: 1, 3, 3, 6, 3, 3, 1, 1
    # for 1..8 vertices (edge / face diagonal / body diagonal for 2; rock-salt, layered,
    # columnar and three less symmetric orderings for 4).
    saps = SAPSGenerator(
        elements=("Sr", "Ti", "Zr", "O"), partial_mode="sites", supercell=(2, 2, 2)
    )
    out = list(saps.generate([make_template("pv", perovskite(), "test")]))
    assert all(c.substitution == {"Ti": "Zr"} for c in out)
    counts = Counter(round(c.replaced_fraction * 8) for c in out)
    assert [counts[k] for k in range(1, 9)] == [1, 3, 3, 6, 3, 3, 1, 1]
    half = [c for c in out if c.replaced_fraction == 0.5]
    assert_pairwise_distinct(half)
    # the double perovskite (rock-salt ordered B sites, Fm-3m) is among them
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    groups = {SpacegroupAnalyzer(s).get_space_group_symbol() for s in structures(half)}
    assert "Fm-3m" in groups and "P4/mmm" in groups


@pytest.mark.slow
def test_site_enumeration_agrees_with_brute_force_structure_matching():
    """Independent check: all C(8,4) half decorations grouped by StructureMatcher."""
    template = perovskite() * (2, 2, 2)
    ti = [i for i, s in enumerate(template) if s.specie.symbol == "Ti"]
    brute = []
    for subset in itertools.combinations(ti, 4):
        s = template.copy()
        for i in subset:
            s.replace(i, "Zr")
        brute.append(s)
    groups = StructureMatcher().group_structures(brute)
    perms = site_permutations(template)
    ours = list(distinct_subsets(perms, ti, sizes=[4]))
    assert len(ours) == len(groups) == 6


def test_site_permutations_are_a_group_and_orbits_are_wyckoff_orbits():
    s = perovskite() * (2, 2, 2)
    perms = site_permutations(s)
    assert len(perms) == 48 * 8  # Pm-3m point operations times the 8 supercell translations
    # closure: composing two operations gives an operation
    as_set = {tuple(p) for p in perms.tolist()}
    for a, b in itertools.product(perms[::37], perms[::41]):
        assert tuple(a[b].tolist()) in as_set
    o_sites = [i for i, x in enumerate(s) if x.specie.symbol == "O"]
    assert len(site_orbits(perms, o_sites)) == 1  # 3c stays one orbit in the supercell


def test_wyckoff_unions_of_two_orbits():
    # Na on two inequivalent sites (no operation relates them): 3 outcomes Na->K: either orbit, both
    s = Structure(
        Lattice.tetragonal(4.0, 7.0),
        ["Na", "Na", "Cl", "Cl"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.1], [0, 0, 0.75]],
    )
    perms = site_permutations(s)
    assert site_orbits(perms, [0, 1]) == [[0], [1]]
    saps = SAPSGenerator(elements=("Na", "K", "Cl"), partial_mode="wyckoff", verify=False)
    out = list(saps.generate([make_template("t", s, "test")]))
    assert sorted((c.replaced_fraction, tuple(c.extra["replaced_sites"])) for c in out) == [
        (0.5, (0,)),
        (0.5, (1,)),
        (1.0, (0, 1)),
    ]


def test_provenance_fields_and_volume_rescaling():
    saps = SAPSGenerator(elements=("Na", "K", "Cl"), partial=False, seed=11, campaign="c1", round=2)
    (c,) = list(saps.generate([make_template("rs", rock_salt(), "test")]))
    assert c.generator == "saps"
    assert c.generator_version.startswith("gnomon-") and "saps" in c.generator_version
    assert c.template_id == "rs" and c.substitution == {"Na": "K"} and c.replaced_fraction == 1.0
    assert c.seed == 11 and c.campaign == "c1" and c.round == 2
    assert c.fingerprint == "KCl"  # the dedup key: the reduced formula
    assert c.extra["probability"] >= saps.threshold
    # K+ is larger than Na+: the cell grows
    assert Structure.from_dict(c.structure).volume > rock_salt().volume * 1.1


def test_threshold_and_charge_balance_filters():
    # Ti4+ -> Zr4+ is a likely substitution; with a threshold above it nothing comes out
    p, charge = substitution_probability("Ti", "Zr", 4)
    assert p > 0.01 and charge == 4
    high = SAPSGenerator(elements=("Sr", "Ti", "Zr", "O"), threshold=p * 1.01, partial=False)
    assert list(high.generate([make_template("pv", perovskite(), "test")])) == []
    # charge balance: Sr2+ -> La3+ full substitution makes LaTiO3 (balanced with Ti3+),
    # strict mode keeps only balanced formulas
    saps = SAPSGenerator(elements=("Sr", "La", "Ti", "O"), partial=False, charge_balance="strict")
    for c in saps.generate([make_template("pv", perovskite(), "test")]):
        from gnomon.pipeline.generation.compositions import is_balanced

        assert is_balanced(c.reduced_formula, "strict")


def test_within_elements_and_multi_species_maps_on_prototypes():
    # the rock-salt prototype (Na, Cl) reaches K-Br only when both species are substituted
    templates = list(prototype_templates(["B1"]))
    assert len(templates) == 1 and templates[0].id == "aflow:AB_cF8_225_a_b"
    one = SAPSGenerator(elements=("K", "Br"), max_species=1)
    assert list(one.generate(templates)) == []
    two = SAPSGenerator(elements=("K", "Br"), max_species=2)
    out = list(two.generate(templates))
    assert [c.reduced_formula for c in out] == ["KBr"]
    assert out[0].substitution == {"Cl": "Br", "Na": "K"}


def test_disordered_and_broken_templates_are_skipped_with_reasons():
    disordered = rock_salt()
    disordered.replace(0, {"Na": 0.5, "K": 0.5})
    overlapping = Structure(Lattice.cubic(4), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]])
    templates = [
        make_template("bad1", disordered, "test"),
        make_template("bad2", overlapping, "test"),
        make_template("good", rock_salt(), "test"),
    ]
    assert isinstance(templates[0], SkippedTemplate) and "disordered" in templates[0].reason
    assert isinstance(templates[1], SkippedTemplate) and "apart" in templates[1].reason
    saps = SAPSGenerator(elements=("Na", "K", "Cl"), partial=False)
    out = list(saps.generate(templates))
    assert [c.template_id for c in out] == ["good"]
    assert [s.id for s in saps.skipped] == ["bad1", "bad2"]


def test_limit_and_processes_give_the_same_stream():
    templates = [
        make_template("rs", rock_salt(), "test"),
        make_template("pv", perovskite(), "test"),
    ]
    saps = SAPSGenerator(elements=("Na", "K", "Cl", "Sr", "Ti", "Zr", "O"), partial_mode="sites")
    serial = [c.id for c in saps.generate(templates)]
    assert len(serial) > 4
    assert [c.id for c in saps.generate(templates, limit=3)] == serial[:3]
    parallel = [c.id for c in saps.generate(templates, processes=2)]
    assert parallel == serial
    shards = [[c.id for c in saps.generate(templates, shard_of=(i, 2))] for i in range(2)]
    assert shards[0] + shards[1] == serial and shards[0] and shards[1]


class FailsMidway(SAPSGenerator):
    """SAPS whose expansion of template "rs" fails after its first two outcomes."""

    def expand(self, template):
        for k, candidate in enumerate(super().expand(template)):
            if template.id == "rs" and k == 2:
                raise ValueError("no oxidation state for X")
            yield candidate


def test_a_template_streams_its_outcomes_and_a_failure_midway_keeps_those_made_before_it():
    templates = [make_template("rs", rock_salt(), "test"),
                 make_template("pv", perovskite(), "test")]
    elements = ("Na", "K", "Cl", "Sr", "Ti", "Zr", "O")
    saps = SAPSGenerator(elements=elements, partial_mode="sites")
    # in this process, the first outcome comes before the template's expansion ends: a
    # template with millions of outcomes is never listed
    made = []
    real = saps.expand

    def expand(template):
        for candidate in real(template):
            made.append(candidate.id)
            yield candidate

    saps.expand = expand
    first = next(saps.generate(templates))
    assert made == [first.id]
    for processes in (1, 2):
        failing = FailsMidway(elements=elements, partial_mode="sites")
        out = [c.template_id for c in failing.generate(templates, processes=processes)]
        assert out[:2] == ["rs", "rs"] and set(out[2:]) == {"pv"}
        assert [(s.id, s.reason) for s in failing.skipped] == [
            ("rs", "substitution failed: no oxidation state for X")]


def test_distinct_subsets_without_symmetry_enumerates_every_subset():
    perms = np.arange(5)[None, :]
    subsets = list(distinct_subsets(perms, [0, 1, 2, 3, 4]))
    assert len(subsets) == 2**5 - 1


def test_substitution_table_reproduces_pymatgens_probabilities():
    from pymatgen.core import Species
    from pymatgen.core.structure_prediction.substitution_probability import SubstitutionProbability

    from gnomon.pipeline.generation.substitution import _probability_table

    ours, theirs = _probability_table(), SubstitutionProbability()
    for old, new in [
        ("Li+", "Na+"),
        ("Co3+", "Mn3+"),
        ("O2-", "S2-"),
        ("Ti4+", "Zr4+"),
        ("Li+", "Mn3+"),
        ("Li+", "Xe+"),
    ]:
        expected = theirs.cond_prob(Species.from_str(new), Species.from_str(old))
        assert ours.cond_prob(new, old) == pytest.approx(expected, rel=1e-12)
    # element level: the best same-sign observed pair, A's charge from the template
    assert substitution_probability("Li", "Na", 1) == (pytest.approx(0.09499, rel=1e-3), 1.0)
    assert substitution_probability("O", "Na", -2)[0] == 0.0  # an anion for a cation: never
