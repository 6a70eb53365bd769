"""`gnomon phases --novelty`: each discovery marked new, known, or an ordering of a known
disordered phase (given as a CIF with --known), with the AMD distance to the nearest known
phase; phases that are no discovery show where they came from."""

from __future__ import annotations

import csv
import io
import json

import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import open_repository
from gnomon.storage.documents import Candidate

pytestmark = pytest.mark.slow  # amd's numba kernels compile on first use in a fresh environment

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def wurtzite() -> Structure:
    return Structure(
        Lattice.hexagonal(3.2, 5.2),
        ["Li", "Mn", "O", "O"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.375], [2 / 3, 1 / 3, 0.875]],
    )


def layered_rocksalt() -> Structure:
    return Structure(
        Lattice.cubic(4.2),
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


def perovskite() -> Structure:
    return Structure(
        Lattice.cubic(3.9),
        ["Li", "Mn", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


@pytest.fixture
def db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'novelty.db'}"
    repo = open_repository(url)
    strained = wurtzite()
    strained.scale_lattice(strained.volume * 1.05)
    found = {"twin": strained, "ordering": layered_rocksalt(), "fresh": perovskite()}
    repo.put(
        [
            Candidate(
                id=name,
                structure=s.as_dict(),
                formula=s.formula.replace(" ", ""),
                reduced_formula=s.composition.reduced_formula,
                chemsys=s.composition.chemical_system,
                nsites=len(s),
                generator="saps",
                campaign="c",
            )
            for name, s in found.items()
        ]
    )
    entries = [make_entry(el, -4.0, "s") for el in ("Li", "Mn", "O2")]
    entries.append(
        make_entry("LiMnO2", -20.0, "s", structure=wurtzite(), source="mp.json")
    )  # imported
    entries += [
        make_entry(s.composition, -5.0 * len(s), "s", structure=s, candidate_id=name, campaign="c")
        for name, s in found.items()
    ]
    HullEngine(repo).ingest(entries)
    repo.close()
    return url


def test_phases_novelty_flags_and_distances(db, tmp_path):
    from pymatgen.io.cif import CifWriter

    rows = {
        r["candidate_id"] or r["formula"]: r
        for r in json.loads(
            invoke("phases", "--novelty", "--format", "json", "--db", db).stdout
        )["phases"]
    }
    assert rows["twin"]["novelty"] == "known" and rows["twin"]["nearest_known_source"] == "imported"
    assert rows["twin"]["nearest_known_amd"] < 0.05
    assert rows["ordering"]["novelty"] == "new"  # nothing disordered is known yet
    assert rows["fresh"]["novelty"] == "new" and rows["fresh"]["nearest_known_formula"] == "LiMnO2"
    assert rows["fresh"]["nearest_known_amd"] > 0.1
    imported = next(r for r in rows.values() if r["source"] == "mp.json")
    assert imported["origin"] == "imported" and imported["novelty"] is None  # no discovery
    assert rows["Li"]["novelty"] is None

    disordered = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.2), [{"Li": 0.5, "Mn": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    cif = tmp_path / "rocksalt-LiMnO2.cif"
    CifWriter(disordered).write_file(cif)
    rows = {
        r["candidate_id"]: r
        for r in json.loads(
            invoke("phases", "--known", str(cif), "--format", "json", "--db", db).stdout
        )["phases"]
    }
    assert rows["ordering"]["novelty"] == "ordering-of-disordered"
    assert rows["ordering"]["nearest_known_id"] == "rocksalt-LiMnO2.cif"
    assert rows["ordering"]["nearest_known_amd"] == pytest.approx(0.0, abs=1e-6)

    table = invoke("phases", "--novelty", "--known", str(cif), "--db", db).stdout
    assert "ordering-of-disor" in table and "(imported)" in table and "novelty" in table
    plain = invoke("phases", "--db", db).stdout
    assert "novelty" not in plain  # only when asked: the check costs seconds
    csv_rows = list(
        csv.DictReader(
            io.StringIO(invoke("phases", "--novelty", "--format", "csv", "--db", db).stdout)
        )
    )
    assert {r["novelty"] for r in csv_rows} == {"known", "new", ""}


def test_unreadable_known_file_is_named(db, tmp_path):
    bad = tmp_path / "broken.cif"
    bad.write_text("data_x\n_cell_length_a oops\n")
    result = runner.invoke(app, ["phases", "--known", str(bad), "--db", db])
    assert result.exit_code != 0 and "broken.cif" in result.output
