"""Novelty of a stable phase: species-exact matches are ``known``, an ordering of a known
disordered phase is flagged as such (not ``new``), anything else is ``new``; the AMD distance to
the nearest known phase is ~0 for the same crystal (strained, in another cell) and larger for
another structure. Stored phases count as known unless they are the phase's own lineage or were
found after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.pipeline.thermo.novelty import (
    NoveltyChecker,
    NoveltyFlag,
    Reference,
    novelty_of_rows,
    references_from_files,
    stored_references,
)
from gnomon.pipeline.thermo.phase_query import PhaseQuery
from gnomon.storage.documents import Candidate

pytestmark = pytest.mark.slow  # the first AMD call compiles amd's numba kernels (cached after)

A = 4.2  # Å, rock-salt cube edge


def disordered_rocksalt(a: float = A) -> Structure:
    """(Li0.5Mn0.5)O: one cation site shared by Li and Mn (a cation-disordered rock salt)."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), [{"Li": 0.5, "Mn": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def layered_limno2(a: float = A) -> Structure:
    """LiMnO2 with Li and Mn in alternate (001) cation layers of the same rock salt: an
    ordering of :func:`disordered_rocksalt` (P4/mmm)."""
    return Structure(
        Lattice.cubic(a),
        ["Li", "Li", "Mn", "Mn", "O", "O", "O", "O"],
        [
            [0, 0, 0],
            [0.5, 0.5, 0],
            [0.5, 0, 0.5],
            [0, 0.5, 0.5],
            [0.5, 0.5, 0.5],
            [0, 0, 0.5],
            [0, 0.5, 0],
            [0.5, 0, 0],
        ],
    )


def wurtzite_limno2() -> Structure:
    """LiMnO2 on a wurtzite frame (tetrahedral cations): the same composition, another
    structure."""
    return Structure(
        Lattice.hexagonal(3.2, 5.2),
        ["Li", "Mn", "O", "O"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.375], [2 / 3, 1 / 3, 0.875]],
    )


def strained(structure: Structure, volume: float = 1.06, seed: int = 0) -> Structure:
    """The same crystal in a supercell, 6 % larger and with its atoms moved by 0.02 Å."""
    import numpy as np

    out = structure.make_supercell([1, 1, 2], in_place=False)
    out.scale_lattice(out.volume * volume)
    rng = np.random.default_rng(seed)
    for i in range(len(out)):
        out.translate_sites([i], rng.normal(scale=0.012, size=3), frac_coords=False)
    return out


def test_an_ordering_of_a_known_disordered_phase_is_flagged():
    checker = NoveltyChecker([Reference("icsd-rocksalt", disordered_rocksalt(), "file icsd.cif")])
    result = checker.check(layered_limno2())
    assert result.flag is NoveltyFlag.ordering_of_disordered
    assert (result.nearest_id, result.nearest_formula) == ("icsd-rocksalt", "LiMnO2")
    assert result.amd == pytest.approx(0.0, abs=1e-6)  # the same sites, only the species order
    # a species-exact matcher alone would have called it new: the TaCr2O6 trap
    from pymatgen.analysis.structure_matcher import StructureMatcher

    assert not StructureMatcher().fit(layered_limno2(), disordered_rocksalt())
    # another structure of the same composition is no ordering of it
    other = checker.check(wurtzite_limno2())
    assert other.flag is NoveltyFlag.new and other.nearest_id == "icsd-rocksalt"
    assert other.amd > 0.1


def test_l10_cuau_is_an_ordering_of_disordered_fcc_cuau():
    fcc = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(3.87), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]]
    )
    l10 = Structure(
        Lattice.tetragonal(3.96 / 2**0.5, 3.67), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    result = NoveltyChecker([Reference("cuau-a1", fcc, "file")]).check(l10)
    assert result.flag is NoveltyFlag.ordering_of_disordered and result.nearest_id == "cuau-a1"
    assert result.amd > 1e-3  # tetragonal (c/a 0.93): not quite the cubic geometry
    # B2 CuAu orders the bcc lattice, not the fcc one: new, and much farther from A1
    b2 = Structure(Lattice.cubic(3.05), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    other = NoveltyChecker([Reference("cuau-a1", fcc, "file")]).check(b2)
    assert other.flag is NoveltyFlag.new and other.amd > 2 * result.amd


def test_exact_match_is_known_with_amd_near_zero_and_a_new_phase_is_farther():
    known = Reference("mp-layered", layered_limno2(), "imported")
    checker = NoveltyChecker([known])
    same = checker.check(strained(layered_limno2()))
    assert same.flag is NoveltyFlag.known and same.nearest_id == "mp-layered"
    assert same.amd < 0.05
    new = checker.check(wurtzite_limno2())
    assert new.flag is NoveltyFlag.new and new.nearest_id == "mp-layered"
    assert new.amd > 10 * max(same.amd, 1e-3)
    # Li and Mn layers swapped round is the same crystal shifted by half a cell; with Na it is
    # another chemical space, never compared
    swapped = layered_limno2().replace_species({"Li": "Mn", "Mn": "Li"})
    assert checker.check(swapped).flag is NoveltyFlag.known
    # oxidation-state labels are not a crystal's identity
    decorated = strained(layered_limno2())
    decorated.add_oxidation_state_by_element({"Li": 1, "Mn": 3, "O": -2})
    assert checker.check(decorated).flag is NoveltyFlag.known
    assert checker.check(layered_limno2().replace_species({"Li": "Na"})).nearest_id is None


def test_nothing_known_in_the_space_is_new_without_a_distance():
    result = NoveltyChecker([]).check(layered_limno2())
    assert result.flag is NoveltyFlag.new and result.nearest_id is None and result.amd is None
    assert "nothing known" in result.describe()


def test_known_disordered_phases_read_from_a_cif(tmp_path):
    from pymatgen.io.cif import CifWriter

    path = tmp_path / "rocksalt.cif"
    CifWriter(disordered_rocksalt()).write_file(path)
    (ref,) = references_from_files([path])
    assert not ref.is_ordered and ref.id == "rocksalt.cif"
    assert NoveltyChecker([ref]).check(layered_limno2()).flag is NoveltyFlag.ordering_of_disordered
    (tmp_path / "bad.cif").write_text("not a cif\n")
    with pytest.raises(ValueError, match="bad.cif"):
        references_from_files([tmp_path / "bad.cif"])


def _stored(repo, structure, candidate_id, generator, when, **extra):
    repo.put(
        [
            Candidate(
                id=candidate_id,
                structure=structure.as_dict(),
                formula=structure.formula.replace(" ", ""),
                reduced_formula=structure.composition.reduced_formula,
                chemsys=structure.composition.chemical_system,
                nsites=len(structure),
                generator=generator,
                campaign="c",
            )
        ]
    )
    return make_entry(
        structure.composition,
        -6.0 * len(structure),
        "s",
        structure=structure,
        candidate_id=candidate_id,
        campaign="c",
        created_at=when,
        **extra,
    )


def test_stored_phases_known_lineage_and_order_of_discovery(sqlite_repo):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    refs = [make_entry(el, -5.0, "s") for el in ("Li", "Mn", "O2")]
    known = _stored(sqlite_repo, layered_limno2(), "k", "known", t0)
    twin = _stored(sqlite_repo, strained(layered_limno2()), "c1", "saps", t0 + timedelta(hours=1))
    first = _stored(sqlite_repo, wurtzite_limno2(), "c2", "saps", t0 + timedelta(hours=2))
    # its DFT entry, started from it: the same crystal in another scheme, never "known" from it
    child = make_entry(
        first.formula,
        -50.0,
        "dft",
        structure=Structure.from_dict(first.structure),
        candidate_id="c2-dft",
        parent_entry_id=first.id,
        campaign="c",
        created_at=t0 + timedelta(hours=3),
    )
    # another started from it, linked only through its candidate's parent
    sqlite_repo.put(
        [
            Candidate(
                id="c2-dft2",
                structure=first.structure,
                formula=first.formula,
                reduced_formula=first.reduced_formula,
                chemsys=first.chemsys,
                nsites=first.nsites,
                generator="mlip",
                campaign="c",
                parent_entry_id=first.id,
            )
        ]
    )
    child2 = make_entry(
        first.formula,
        -51.0,
        "dft2",
        structure=Structure.from_dict(first.structure),
        candidate_id="c2-dft2",
        campaign="c",
        created_at=t0 + timedelta(hours=3),
    )
    again = _stored(
        sqlite_repo,
        strained(wurtzite_limno2(), 1.03, seed=1),
        "c3",
        "random",
        t0 + timedelta(hours=4),
    )
    HullEngine(sqlite_repo).ingest([*refs, known, twin, first, child, child2, again])

    by_id = {r.id: r for r in stored_references(sqlite_repo, ["Li-Mn-O"])}
    assert by_id[known.id].source == "known" and by_id[known.id].found_at is None
    assert (
        by_id[first.id].source == "campaign c"
        and by_id[child.id].lineage == by_id[first.id].lineage
    )

    rows = PhaseQuery(chemsys="Li-Mn-O").run(sqlite_repo)
    result = novelty_of_rows(sqlite_repo, rows)
    assert result[known.id] is None  # a known phase is no discovery
    assert all(result[r.id] is None for r in refs)  # nor are the elements
    assert result[twin.id].flag is NoveltyFlag.known and result[twin.id].nearest_id == known.id
    assert result[first.id].flag is NoveltyFlag.new  # the later twin does not make it known
    assert result[child.id].flag is NoveltyFlag.new  # nor does its own ML-relaxed parent
    assert result[child2.id].flag is NoveltyFlag.new
    assert result[again.id].flag is NoveltyFlag.known and result[again.id].nearest_id in (
        first.id,
        child.id,
        child2.id,
    )
    assert result[again.id].nearest_source == "campaign c"
    assert result[first.id].amd > 0.1 and result[twin.id].amd < 0.05
