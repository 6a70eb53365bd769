"""Templates from files, the prototype library and the database; candidate files; streaming."""

from __future__ import annotations

import tracemalloc

import pytest
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation.candidate_io import (
    CandidateFileError,
    read_candidates,
    write_candidates,
)
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.generation.streaming import chunked, derive_seed, parallel_map, shard
from gnomon.pipeline.generation.templates import (
    SkippedTemplate,
    Template,
    prototype_templates,
    templates_from_files,
    templates_from_repository,
)
from gnomon.storage import Entry, Phase


def nacl() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def sample_candidates():
    s = nacl()
    a = candidate_from_structure(
        s,
        "saps",
        generator_version="gnomon-0.1.0/saps-1",
        template_id="aflow:x",
        substitution={"Na": "K"},
        replaced_fraction=0.25,
        seed=5,
        campaign="c",
        round=1,
        fingerprint="NaCl|225|1",
        extra={"replaced_sites": [0], "p": 0.1},
    )
    b = candidate_from_structure(
        Structure(Lattice.cubic(3.4), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3]), "random-pyxtal", seed=7
    )
    return [a, b]


# -- candidate files ------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".extxyz"])
def test_candidate_files_round_trip_provenance(tmp_path, suffix):
    cands = sample_candidates()
    path = tmp_path / f"out{suffix}"
    assert write_candidates(path, iter(cands)) == 2
    back = list(read_candidates(path))
    assert [c.id for c in back] == [c.id for c in cands]
    for orig, got in zip(cands, back, strict=True):
        for field in (
            "generator",
            "template_id",
            "substitution",
            "replaced_fraction",
            "seed",
            "campaign",
            "round",
            "fingerprint",
            "extra",
            "reduced_formula",
        ):
            assert getattr(got, field) == getattr(orig, field), (suffix, field)
        s1, s2 = Structure.from_dict(orig.structure), Structure.from_dict(got.structure)
        assert s1.composition == s2.composition
        assert s1.lattice.abc == pytest.approx(s2.lattice.abc)


def test_plain_structure_files_become_candidates(tmp_path):
    nacl().to(filename=str(tmp_path / "NaCl.cif"))
    (tmp_path / "list.json").write_text(
        "[" + ",".join(__import__("json").dumps(s.as_dict()) for s in (nacl(), nacl() * 2)) + "]"
    )
    (c,) = list(read_candidates(tmp_path / "NaCl.cif"))
    assert c.generator == "file" and c.reduced_formula == "NaCl"
    assert len(list(read_candidates(tmp_path / "list.json"))) == 2


def test_bad_candidate_files_name_the_record(tmp_path):
    (tmp_path / "bad.json").write_text('[{"id": "c7", "generator": "x", "structure": {}}]')
    with pytest.raises(CandidateFileError, match=r"bad.json record 0 \(id c7\)"):
        list(read_candidates(tmp_path / "bad.json"))
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(CandidateFileError, match="invalid JSON"):
        list(read_candidates(tmp_path / "junk.json"))
    (tmp_path / "odd.json").write_text('[{"a": 1}]')
    with pytest.raises(CandidateFileError, match="record 0: neither a candidate"):
        list(read_candidates(tmp_path / "odd.json"))
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(CandidateFileError, match="bad.jsonl line 1: neither"):
        list(read_candidates(tmp_path / "bad.jsonl"))
    (tmp_path / "bad.jsonl").write_text("\n{oops\n")
    with pytest.raises(CandidateFileError, match="bad.jsonl line 2: invalid JSON"):
        list(read_candidates(tmp_path / "bad.jsonl"))
    with pytest.raises(CandidateFileError, match="no such file"):
        list(read_candidates(tmp_path / "missing.json"))


# -- templates ------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_prototype_of_pymatgens_aflow_library_is_a_usable_template():
    all_protos = list(prototype_templates())
    assert len(all_protos) == 288
    assert all(isinstance(t, Template) for t in all_protos)


def test_prototypes_by_label():
    (perov,) = prototype_templates(["E2_1"])
    assert (
        perov.id == "aflow:AB3C_cP5_221_a_c_b"
        and perov.structure.composition.reduced_formula == "CaTiO3"
    )
    (rock_salt,) = prototype_templates(["halite"])
    assert rock_salt.id == "aflow:AB_cF8_225_a_b"
    (missing,) = prototype_templates(["Z9_nonsense"])
    assert isinstance(missing, SkippedTemplate) and "no prototype" in missing.reason


def test_templates_from_files_and_directories(tmp_path):
    d = tmp_path / "templates"
    d.mkdir()
    nacl().to(filename=str(d / "NaCl.cif"))
    disordered = nacl()
    disordered.replace(0, {"Na": 0.5, "K": 0.5})
    disordered.to(filename=str(d / "NaKCl.cif"))
    (d / "broken.cif").write_text("data_x\n_cell_length_a 1\n")
    got = list(templates_from_files([d, tmp_path / "nope.cif"]))
    by_id = {t.id.rsplit("/", 1)[-1]: t for t in got}
    assert isinstance(by_id["NaCl.cif"], Template)
    assert (
        isinstance(by_id["NaKCl.cif"], SkippedTemplate)
        and "disordered" in by_id["NaKCl.cif"].reason
    )
    assert isinstance(by_id["broken.cif"], SkippedTemplate)
    assert (
        isinstance(by_id["nope.cif"], SkippedTemplate)
        and "no such file" in by_id["nope.cif"].reason
    )


def test_templates_from_the_database_use_stable_phases(repo):
    s = nacl()
    common = dict(
        scheme="s",
        formula="Na1Cl1",
        reduced_formula="NaCl",
        chemsys="Cl-Na",
        elements=["Cl", "Na"],
        nsites=2,
        composition={"Na": 1, "Cl": 1},
        energy=-6.0,
        uncorrected_energy=-6.0,
        energy_per_atom=-3.0,
    )
    repo.put(
        [
            Entry(id="stable", structure=s.as_dict(), **common),
            Entry(id="unstable", structure=s.as_dict(), **common),
            Entry(id="nostructure", **common),
        ]
    )
    repo.put(
        [
            Phase(
                id="stable",
                scheme="s",
                chemsys="Cl-Na",
                reduced_formula="NaCl",
                energy_per_atom=-3.0,
                is_stable=True,
            ),
            Phase(
                id="unstable",
                scheme="s",
                chemsys="Cl-Na",
                reduced_formula="NaCl",
                energy_per_atom=-2.0,
                is_stable=False,
            ),
        ]
    )
    assert [t.id for t in templates_from_repository(repo)] == ["entry:stable"]
    every = list(templates_from_repository(repo, stable_only=False, scheme="s"))
    assert [t.id for t in every if isinstance(t, Template)] == ["entry:stable", "entry:unstable"]
    (skip,) = [t for t in every if isinstance(t, SkippedTemplate)]
    assert skip.id == "entry:nostructure" and "no structure" in skip.reason


# -- streaming ------------------------------------------------------------------------------
def _square(x: int) -> int:
    return x * x


def test_chunks_shards_and_seeds():
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    shards = [list(shard(range(10), i, 3)) for i in range(3)]
    assert sorted(x for s in shards for x in s) == list(range(10))
    assert derive_seed(1, "LiO", 3) == derive_seed(1, "LiO", 3) != derive_seed(1, "LiO", 4)
    assert list(parallel_map(_square, range(20), processes=2)) == [x * x for x in range(20)]
    with pytest.raises(ValueError):
        list(chunked([1], 0))
    with pytest.raises(ValueError):
        list(shard([1], 3, 3))


def test_generators_are_lazy_and_memory_stays_flat():
    """Streaming a long run holds one chunk: peak memory does not grow with the count."""

    def stream(n):
        base = nacl().as_dict()
        from gnomon.storage import Candidate

        for i in range(n):
            yield Candidate(
                id=f"c{i}",
                structure=base,
                formula="Na4Cl4",
                reduced_formula="NaCl",
                chemsys="Cl-Na",
                nsites=8,
                generator="test",
                seed=i,
            )

    def peak(n):
        tracemalloc.start()
        for chunk in chunked(stream(n), 100):
            assert len(chunk) <= 100
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    peak(100)  # first-use allocations (pydantic, imports) are not the stream's
    # both runs span many chunks (a chunk being built while the last is still referenced
    # is the steady state), so a stream that holds what it yielded would show 10x here
    medium, large = peak(1_000), peak(10_000)
    assert large < 1.5 * medium, (medium, large)
