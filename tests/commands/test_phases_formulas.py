"""What a person reads as a formula: pymatgen's reduced formula (`Li3MnO3`, `Li`), never the
stored cell's formula with its amounts of one (`Li3Mn1O3`) or cell multiples (`Li3`, `O4`)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry
from typer.testing import CliRunner

from gnomon.cli import app

runner = CliRunner()

# cells as a calculation holds them: 3 Li atoms, 2 Mn, 4 O, two formula units of LiMn2O4
CELLS = {"Li3": -1.9, "Mn2": -9.0, "O4": -4.9, "Li3Mn1O3": -5.7, "Li2Mn4O8": -7.2, "Li1Mn1O2": -2.0}
SHOWN = {"Li", "Mn", "O2", "Li3MnO3", "LiMn2O4", "LiMnO2"}
NEVER = {"Li3", "Mn2", "O4", "Li3Mn1O3", "Li1Mn2O4", "Li2Mn4O8", "Li1Mn1O2"}


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'formulas.db'}"
    entries = [
        ComputedEntry(Composition(cell), epa * Composition(cell).num_atoms, entry_id=cell)
        for cell, epa in CELLS.items()
    ]
    path = tmp_path / "entries.json"
    path.write_text(json.dumps([e.as_dict() for e in entries]))
    invoke("db", "import", str(path), "--new-scheme", "test-scheme", "--description",
           "formulas of a test", "--db", url)
    return url


def _words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z0-9.]+", text))


def test_phases_json_and_csv_show_reduced_formulas_and_keep_the_cell(db):
    rows = json.loads(invoke("phases", "--format", "json", "--db", db).stdout)["phases"]
    assert {r["formula"] for r in rows} == SHOWN
    assert all(r["formula"] == r["reduced_formula"] for r in rows)
    cells = {r["formula"]: r["cell_formula"] for r in rows}
    assert cells == {
        "Li": "Li3",
        "Mn": "Mn2",
        "O2": "O4",
        "Li3MnO3": "Li3MnO3",
        "LiMn2O4": "Li2Mn4O8",
        "LiMnO2": "LiMnO2",
    }
    table = list(
        csv.DictReader(io.StringIO(invoke("phases", "--format", "csv", "--db", db).stdout))
    )
    assert {r["formula"] for r in table} == SHOWN


def test_phases_and_hull_tables_show_reduced_formulas(db):
    for args in (("phases",), ("phases", "--stable"), ("hull", "Li-Mn-O")):
        words = _words(invoke(*args, "--db", db).stdout)
        assert not words & NEVER, (args, words & NEVER)
    assert SHOWN <= _words(invoke("phases", "--db", db).stdout)
    stable = _words(invoke("phases", "--stable", "--db", db).stdout)
    assert {"Li", "Mn", "O2", "Li3MnO3", "LiMn2O4"} <= stable
    assert "LiMnO2" not in stable
