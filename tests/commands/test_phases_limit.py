"""`gnomon phases` on a database larger than a screen: the table shows the first rows in the
command's order and says how many there are; --limit 0 and the file formats give every row;
space groups missing from old entries are computed only for short results (issue 27, item 10).
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from pymatgen.core import Composition, Lattice, Structure
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.commands import phases as phases_command
from gnomon.pipeline.thermo import phase_query
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import Entry, open_repository

runner = CliRunner()
SCHEME = "mlip-chgnet-0.3.0"
REFERENCE = {"Li": -1.9, "O": -4.9, "Na": -1.3, "Cl": -1.8}  # eV/atom
ROW = re.compile(r"\b[0-9a-f]{16}\b")  # a phase id: one per table row, at its end


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def entry(formula: str, formation: float, **kw):
    comp = Composition(formula)
    total = sum(REFERENCE[str(el)] * n for el, n in comp.items()) + formation * comp.num_atoms
    return make_entry(comp, total, SCHEME, **kw)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> tuple[str, int]:
    """Li-O and Na-Cl: references and 70 compounds, a phase each."""
    url = f"sqlite:///{tmp_path_factory.mktemp('limit') / 'many.db'}"
    entries = [entry(el, 0.0) for el in REFERENCE]
    for k in range(35):
        x, y = 1 + k % 5, 1 + k // 5
        entries.append(entry(f"Li{x}O{y}", -0.5 - 0.01 * k))
        entries.append(entry(f"Na{x}Cl{y}", -0.3 - 0.01 * k))
    repo = open_repository(url)
    HullEngine(repo).ingest(entries)
    n = repo.count("phases")
    repo.close()
    assert n == 74
    return url, n


def ids_of(output: str) -> list[str]:
    return ROW.findall(output)


def test_the_table_shows_a_screenful_and_says_how_many_there_are(db):
    url, n = db
    out = invoke("phases", "--db", url).stdout
    shown = ids_of(out)
    assert len(shown) == phases_command.TABLE_ROWS == 50
    assert f"showing 50 of {n} phases; --limit 0 for all, --format csv/json for files" in out
    every = [r["id"] for r in json.loads(invoke("phases", "--format", "json", "--db", url).stdout)
             ["phases"]]
    assert len(every) == n  # a file format is not cut to a screenful
    assert shown == every[:50]  # the first rows in the command's order


def test_limit_zero_prints_every_row_and_no_limit_line(db):
    url, n = db
    out = invoke("phases", "--limit", "0", "--db", url).stdout
    assert len(ids_of(out)) == n
    assert "showing" not in out


def test_a_limit_shorter_than_the_result_says_so_and_a_longer_one_does_not(db):
    url, n = db
    out = invoke("phases", "--limit", "7", "--db", url).stdout
    assert len(ids_of(out)) == 7 and f"showing 7 of {n} phases" in out
    stable = invoke("phases", "--stable", "--limit", "100", "--db", url).stdout
    assert "showing" not in stable
    rows = list(csv.DictReader(io.StringIO(
        invoke("phases", "--limit", "5", "--format", "csv", "--db", url).stdout)))
    assert len(rows) == 5


def test_a_long_table_is_plain_aligned_text_with_the_same_rows(db, monkeypatch):
    url, n = db
    rich = invoke("phases", "--limit", "0", "--db", url).stdout
    monkeypatch.setattr(phases_command, "RICH_ROWS", 10)
    plain = invoke("phases", "--limit", "0", "--db", url).stdout
    assert "│" in rich and "│" not in plain
    assert ids_of(plain) == ids_of(rich)
    lines = plain.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("formula"))
    assert set(lines[header + 1]) <= {"-", " "}  # the rule under the header
    body = lines[header + 2 : header + 2 + n]
    ends = {line.index(ROW.search(line).group()) for line in body}
    assert len(ends) == 1  # the id column starts at one place on every row: aligned
    doc = json.loads(invoke("phases", "--format", "json", "--db", url).stdout)["phases"]
    stable = {r["id"]: r["is_stable"] for r in doc}
    for line in body:
        assert (" yes " in line) == stable[ROW.search(line).group()], line


def test_a_negative_limit_is_refused(db):
    url, _ = db
    result = runner.invoke(app, ["phases", "--limit", "-1", "--db", url])
    assert result.exit_code == 2
    assert "greater than or equal to 0" in " ".join(result.output.split())


def test_space_groups_of_old_entries_are_computed_only_for_short_results(tmp_path, monkeypatch):
    """An entry stored before gnomon kept its space group gets one computed in a short result;
    in a result longer than SPACEGROUP_ON_THE_FLY rows it shows none, and the table says why."""
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                         [[0, 0, 0], [0.5, 0.5, 0.5]])
    nacl = entry("NaCl", -2.0, structure=rocksalt)
    url = f"sqlite:///{tmp_path / 'old.db'}"
    repo = open_repository(url)
    HullEngine(repo).ingest([entry("Na", 0.0), entry("Cl", 0.0), nacl, entry("Na2Cl", -0.5)])
    repo.update_fields("entries", nacl.id, {"data": {}})  # as an older gnomon stored it
    assert not repo.get(Entry, nacl.id).data
    repo.close()

    def group(*args: str) -> str | None:
        doc = json.loads(invoke("phases", "--format", "json", *args, "--db", url).stdout)
        return next(r["spacegroup"] for r in doc["phases"] if r["id"] == nacl.id)

    assert group() == "Fm-3m (225)"
    monkeypatch.setattr(phase_query, "SPACEGROUP_ON_THE_FLY", 3)
    assert group() is None
    assert group("--elements", "Na,Cl", "--limit", "3") == "Fm-3m (225)"
    table = invoke("phases", "--db", url).stdout
    (line,) = [line for line in table.splitlines() if nacl.id in line]
    assert "Fm-3m" not in line and " - " in line
    assert "1 entry stored without a space group shows none" in " ".join(table.split())
