"""`gnomon generate saps|random|compositions` and `gnomon dedup` as a person uses them."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.pipeline.generation.candidate_io import read_candidates
from gnomon.storage import Candidate, open_repository

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def said(result) -> str:
    """What the command printed, with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.mark.slow
def test_saps_from_a_prototype_to_a_file_and_to_the_database(tmp_path, db):
    out = tmp_path / "saps.json"
    r = invoke("generate", "saps", "--elements", "K,Br", "--prototype", "B1", "--out", str(out))
    assert r.exit_code == 0, r.output
    (c,) = json.loads(out.read_text())
    assert c["reduced_formula"] == "KBr" and c["template_id"] == "aflow:AB_cF8_225_a_b"
    assert c["substitution"] == {"Cl": "Br", "Na": "K"} and c["generator"] == "saps"
    assert "1 written" in said(r)

    for _ in range(2):  # the second run finds everything stored already
        r = invoke(
            "generate",
            "saps",
            "--elements",
            "K,Br",
            "--prototype",
            "B1",
            "--to-db",
            "--db",
            db,
            "--campaign",
            "c1",
            "--round",
            "0",
        )
        assert r.exit_code == 0, r.output
    assert "1 duplicates dropped, 0 written" in said(r)
    with open_repository(db) as repo:
        (stored,) = list(repo.query(Candidate))
        assert (
            stored.campaign == "c1" and stored.round == 0 and stored.template_id == c["template_id"]
        )


def test_saps_partial_sites_on_a_template_file_as_extxyz(tmp_path):
    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
    )
    nacl.to(filename=str(tmp_path / "NaCl.cif"))
    out = tmp_path / "out.extxyz"
    r = invoke(
        "generate",
        "saps",
        "--elements",
        "Na,K,Cl",
        "--templates",
        str(tmp_path / "NaCl.cif"),
        "--partial-mode",
        "sites",
        "--max-species",
        "1",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    got = list(read_candidates(out))
    assert sorted(c.replaced_fraction for c in got) == [0.25, 0.5, 0.75, 1.0]
    assert all(c.template_id.endswith("NaCl.cif") for c in got)


def test_saps_bad_input(tmp_path):
    r = runner.invoke(
        app, ["generate", "saps", "--elements", "Li,Zz", "--out", str(tmp_path / "x.json")]
    )
    assert r.exit_code == 1 and "unknown element 'Zz'" in said(r)
    r = runner.invoke(app, ["generate", "saps", "--elements", "Li,O"])
    assert r.exit_code == 1 and "--out FILE or --to-db" in said(r)
    r = runner.invoke(app, ["generate", "saps", "--out", str(tmp_path / "x.cif")])
    assert r.exit_code == 1 and ".json, .jsonl or .extxyz" in said(r)
    bad = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
    )
    bad.replace(0, {"Na": 0.5, "K": 0.5})
    bad.to(filename=str(tmp_path / "dis.cif"))
    r = runner.invoke(
        app,
        [
            "generate",
            "saps",
            "--elements",
            "Na,K,Cl",
            "--templates",
            str(tmp_path / "dis.cif"),
            "--out",
            str(tmp_path / "x.json"),
        ],
    )
    assert r.exit_code == 0 and "skipped template" in said(r) and "disordered" in said(r)


def test_random_to_a_file_and_bad_compositions(tmp_path):
    out = tmp_path / "rand.jsonl"
    r = invoke(
        "generate",
        "random",
        "--composition",
        "NaCl",
        "--n",
        "2",
        "--max-atoms",
        "4",
        "--seed",
        "5",
        "--min-sep",
        "Na-Cl=2.2,Na-Na=2.8,Cl-Cl=2.8",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    got = list(read_candidates(out))
    assert len(got) == 2 and all(c.reduced_formula == "NaCl" and c.seed == 5 for c in got)
    r = runner.invoke(
        app, ["generate", "random", "--composition", "NaCl", "--shard", "2/2", "--out", str(out)]
    )
    assert r.exit_code == 1 and "0 <= I < N" in said(r)
    r = runner.invoke(app, ["generate", "random", "--composition", "Qx2O", "--out", str(out)])
    assert r.exit_code == 1 and "unknown element" in said(r)
    r = runner.invoke(
        app,
        [
            "generate",
            "random",
            "--composition",
            "NaCl",
            "--volume-per-atom",
            "2",
            "--min-sep",
            "3",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 1 and "cannot hold atoms" in said(r)
    r = runner.invoke(
        app,
        ["generate", "random", "--composition", "NaCl", "--backend", "airss", "--out", str(out)],
        env={"PATH": str(tmp_path)},
    )
    assert r.exit_code == 1 and "not on PATH" in said(r)


def test_compositions_table_and_known_skipping(tmp_path, db):
    out = tmp_path / "f.txt"
    r = invoke(
        "generate",
        "compositions",
        "--elements",
        "Li,Mn,O",
        "--max-atoms",
        "6",
        "--db",
        db,
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    formulas = out.read_text().split()
    assert "LiMnO2" in formulas and "Li2MnO3" in formulas
    relaxed = tmp_path / "g.txt"
    invoke(
        "generate",
        "compositions",
        "--elements",
        "Li,Mn,O",
        "--max-atoms",
        "6",
        "--relaxed",
        "--db",
        db,
        "--out",
        str(relaxed),
    )
    assert set(formulas) < set(relaxed.read_text().split())
    r = runner.invoke(
        app, ["generate", "compositions", "--elements", "Li,Mn,O", "--max-atoms", "2", "--db", db]
    )
    assert r.exit_code == 1 and "at least 3 atoms" in said(r)


def test_dedup_file(tmp_path, db):
    from gnomon.pipeline.generation.candidate_io import write_candidates
    from gnomon.pipeline.generation.identity import candidate_from_structure

    def nacl(a):
        return Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
        )

    cscl = Structure(Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    path = tmp_path / "cands.json"
    write_candidates(
        path, [candidate_from_structure(s, "test") for s in (nacl(5.6), nacl(5.8), cscl, nacl(5.6))]
    )
    r = invoke("dedup", str(path))
    assert r.exit_code == 0, r.output
    unique = list(read_candidates(tmp_path / "cands.unique.json"))
    assert len(unique) == 2
    assert "4 candidates, 1 identical, 1 matched" in said(r)
    with open_repository(db) as repo:
        repo.add_candidates([unique[0]])
    r = invoke("dedup", str(path), "--against-db", "--db", db, "--out", str(tmp_path / "new.jsonl"))
    assert r.exit_code == 0, r.output
    assert len(list(read_candidates(tmp_path / "new.jsonl"))) == 1
    (tmp_path / "broken.json").write_text('[{"id": "x", "generator": "g", "structure": {}}]')
    r = runner.invoke(app, ["dedup", str(tmp_path / "broken.json")])
    assert r.exit_code == 1 and "record 0 (id x)" in said(r)


@pytest.mark.slow
def test_saps_candidates_come_at_their_predicted_volume_and_raw_keeps_the_template(tmp_path):
    """A prototype's cell is scaled by radii from its template; the physical check brings it
    to the predicted volume (and says how many it rescaled); --raw keeps the template's."""
    from pymatgen.core import Structure

    from gnomon.pipeline.generation.random_search import estimate_volume_per_atom

    physical, raw = tmp_path / "physical.json", tmp_path / "raw.json"
    r = invoke(
        "generate", "saps", "--elements", "K,Br", "--prototype", "B1", "--out", str(physical)
    )
    assert r.exit_code == 0, r.output
    assert "rescaled to their predicted volume" in said(r) and "0 refused as unphysical" in said(r)
    r = invoke(
        "generate", "saps", "--elements", "K,Br", "--prototype", "B1", "--raw", "--out", str(raw)
    )
    assert r.exit_code == 0, r.output
    assert "rescaled" not in said(r)
    (c,), (d,) = json.loads(physical.read_text()), json.loads(raw.read_text())
    s, t = Structure.from_dict(c["structure"]), Structure.from_dict(d["structure"])
    assert c["id"] == d["id"]
    predicted = estimate_volume_per_atom(s.composition)
    assert abs(s.volume / len(s) - predicted) < 1e-6 * predicted
    assert abs(t.volume / len(t) - predicted) > 0.01 * predicted
