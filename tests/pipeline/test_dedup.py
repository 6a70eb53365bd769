"""Dedup: fingerprints, StructureMatcher inside buckets, the database, provenance round trips."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation.dedup import Deduplicator, dedup_structures
from gnomon.pipeline.generation.fingerprint import fingerprint, formula_of
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.templates import make_template
from gnomon.storage import Candidate, Entry


def nacl(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def cscl_nacl(a: float = 3.4) -> Structure:
    """A different NaCl polymorph (CsCl type)."""
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def jiggled(s: Structure, amount: float, seed: int) -> Structure:
    rng = np.random.default_rng(seed)
    shifts = rng.normal(scale=amount, size=(len(s), 3))
    return Structure(s.lattice, s.species, s.cart_coords + shifts, coords_are_cartesian=True)


def cand(s: Structure, **prov) -> Candidate:
    return candidate_from_structure(s, "test", **prov)


def test_dedup_key_is_the_reduced_formula_shared_by_every_cell_of_one_crystal():
    fp = fingerprint(nacl())
    assert fp == "NaCl"
    assert fingerprint(nacl().get_primitive_structure()) == fp
    assert fingerprint(nacl() * (2, 1, 1)) == fp
    assert fingerprint(nacl(6.0)) == fp
    assert fingerprint(jiggled(nacl(), 0.02, 0)) == fp
    assert fingerprint(cscl_nacl()) == fp  # polymorphs share a bucket; the matcher decides
    assert formula_of(fp) == "NaCl" and formula_of("LiMnO2|166|1") == "LiMnO2"


def test_batch_dedup_keeps_one_of_each_structure():
    structures = [
        nacl(),
        nacl() * (1, 1, 2),
        nacl(5.9),
        jiggled(nacl(), 0.03, 1),
        cscl_nacl(),
        cscl_nacl(3.6),
    ]
    dedup = Deduplicator()
    kept = dedup.unique([cand(s) for s in structures])
    assert [k.reduced_formula for k in kept] == ["NaCl", "NaCl"]
    assert {k.fingerprint for k in kept} == {"NaCl"}
    assert dedup.stats.seen == 6 and dedup.stats.kept == 2 and dedup.stats.duplicates == 4
    assert dedup_structures(structures) == [0, 4]
    # later chunks are compared with earlier ones
    assert dedup.unique([cand(nacl(5.7))]) == []


def test_distinct_saps_outputs_survive_and_a_repeat_run_is_all_duplicates():
    t = make_template("rs", nacl(), "test")
    out = list(SAPSGenerator(elements=("Na", "K", "Cl"), partial_mode="sites").generate([t]))
    dedup = Deduplicator()
    assert len(dedup.unique(out)) == len(out) == 4
    again = list(SAPSGenerator(elements=("Na", "K", "Cl"), partial_mode="sites").generate([t]))
    assert dedup.unique(again) == []
    assert dedup.stats.same_id == 4


def test_dedup_against_the_database_candidates_and_entries(repo):
    stored = cand(nacl())
    stored.fingerprint = fingerprint(nacl())
    repo.add_candidates([stored])
    s = cscl_nacl()
    repo.put(
        [
            Entry(
                id="e-cscl",
                scheme="mlip-test",
                formula="Na1Cl1",
                reduced_formula="NaCl",
                chemsys="Cl-Na",
                elements=["Cl", "Na"],
                nsites=2,
                composition={"Na": 1, "Cl": 1},
                energy=-6.0,
                uncorrected_energy=-6.0,
                energy_per_atom=-3.0,
                structure=s.as_dict(),
            )
        ]
    )
    dedup = Deduplicator(repository=repo, remember=False)
    new = [cand(nacl(5.8)), cand(jiggled(cscl_nacl(3.5), 0.01, 3)), cand(nacl() * (2, 2, 2))]
    fresh_kcl = cand(
        Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(6.3), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        )
    )
    kept = dedup.unique([*new, fresh_kcl])
    assert [k.reduced_formula for k in kept] == ["KCl"]
    assert dedup.stats.duplicate_of[new[0].id] == stored.id
    assert dedup.stats.duplicate_of[new[1].id] == "e-cscl"
    # without entries in the comparison, the CsCl-type candidate is new
    only_candidates = Deduplicator(repository=repo, against_entries=False)
    assert [k.reduced_formula for k in only_candidates.unique(new)] == ["NaCl"]


def test_streaming_dedup_with_storage_between_chunks(repo):
    structures = [nacl(a) for a in (5.6, 5.7, 5.8)] + [cscl_nacl(a) for a in (3.3, 3.4)]
    dedup = Deduplicator(repository=repo, remember=False)
    kept_total = []
    from gnomon.pipeline.generation.streaming import chunked

    for chunk in chunked((cand(s) for s in structures), 2):
        kept = dedup.unique(chunk)
        repo.add_candidates(kept)
        kept_total += kept
    assert len(kept_total) == 2 and repo.count("candidates") == 2


def test_provenance_round_trips_through_the_database(repo):
    t = make_template("aflow:AB_cF8_225_a_b", nacl(), "prototype")
    out = list(
        SAPSGenerator(
            elements=("Na", "K", "Cl"), partial_mode="sites", seed=9, campaign="camp", round=3
        ).generate([t])
    )
    assert repo.add_candidates(out) == [c.id for c in out]
    for c in out:
        back = repo.get(Candidate, c.id)
        assert back is not None
        for field in (
            "generator",
            "generator_version",
            "template_id",
            "substitution",
            "replaced_fraction",
            "seed",
            "campaign",
            "round",
            "fingerprint",
            "extra",
            "reduced_formula",
            "chemsys",
            "nsites",
        ):
            assert getattr(back, field) == getattr(c, field), field
        assert Structure.from_dict(back.structure) == Structure.from_dict(c.structure)
    by_fp = list(repo.query(Candidate, {"fingerprint": out[1].fingerprint}))
    assert out[1].id in {c.id for c in by_fp}
    assert repo.count("candidates", {"campaign": "camp", "round": 3}) == len(out)


def test_unreadable_candidate_is_named():
    bad = Candidate(
        id="broken-1",
        structure={"nope": 1},
        formula="X",
        reduced_formula="X",
        chemsys="X",
        nsites=1,
        generator="test",
    )
    with pytest.raises(ValueError, match="candidate broken-1: unreadable structure"):
        Deduplicator().unique([bad])
