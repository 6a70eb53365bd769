"""`gnomon db check`: a sound database checks clean; each kind of damage is named, one line per
problem, with a non-zero exit; the check itself writes nothing."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest
from storage_helpers import fill
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.pipeline.thermo.hull_audit import hull_problems
from gnomon.storage import open_repository
from gnomon.storage.integrity import record_problems

runner = CliRunner()


def check(url: str):
    return runner.invoke(app, ["db", "check", "--db", url], catch_exceptions=False)


def problem_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("problem:")]


def test_a_sound_database_checks_clean_and_the_check_writes_nothing(tmp_path):
    path = tmp_path / "g.db"
    fill(f"sqlite:///{path}")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = check(f"sqlite:///{path}")
    assert result.exit_code == 0, result.output
    assert ": ok (" in result.output
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def _edit(path, table: str, rid: str, **fields) -> None:
    conn = sqlite3.connect(path)
    doc = json.loads(conn.execute(f"SELECT doc FROM {table} WHERE id=?", (rid,)).fetchone()[0])
    doc.update(fields)
    conn.execute(f"UPDATE {table} SET doc=? WHERE id=?", (json.dumps(doc), rid))
    conn.commit()
    conn.close()


def test_each_kind_of_damage_is_named_in_one_line(tmp_path):
    path = tmp_path / "g.db"
    entries = fill(f"sqlite:///{path}")
    compound = next(e for e in entries if len(e.elements) == 3)
    other = next(e for e in entries if len(e.elements) == 2 and e.id != compound.id)
    conn = sqlite3.connect(path)
    stored = json.loads(conn.execute("SELECT doc FROM phases WHERE id=?",
                                     (compound.id,)).fetchone()[0])
    conn.close()
    _edit(path, "phases", compound.id, e_above_hull=stored["e_above_hull"] + 0.03)
    _edit(path, "candidates", "cand-5", nsites="many")
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM phases WHERE id=?", (other.id,))  # an entry left without phase
    conn.execute("DELETE FROM calculations WHERE id='calc-7'")  # an entry's calculation gone
    conn.commit()
    conn.close()

    result = check(f"sqlite:///{path}")
    assert result.exit_code == 1
    lines = problem_lines(result.output)
    assert any(compound.id in line and "e_above_hull" in line and "fresh hull" in line
               for line in lines), lines
    assert any("candidates cand-5: invalid document: nsites" in line for line in lines), lines
    assert any(f"entries {other.id}: no phase" in line for line in lines), lines
    assert any("calculation_id calc-7 is not in calculations" in line for line in lines), lines
    assert len(lines) == 4, lines
    assert f"error: 4 problem(s) in sqlite:///{path}" in result.output
    assert "Traceback" not in result.output


def test_a_corrupt_file_is_named_by_sqlite_integrity_check(tmp_path):
    path = tmp_path / "g.db"
    fill(f"sqlite:///{path}", n=60)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    for offset in range(3 * page + 100, 3 * page + 400):  # inside a b-tree page
        data[offset] = 0xA5
    path.write_bytes(bytes(data))
    result = check(f"sqlite:///{path}")
    assert result.exit_code == 1
    lines = problem_lines(result.output)
    assert lines and all(str(path) in line for line in lines), result.output
    assert "Traceback" not in result.output


def test_mongodb_records_and_hulls_are_checked_the_same_way():
    url = "mongomock://integrity-check/gnomon"
    entries = fill(url)
    repo = open_repository(url)
    try:
        assert list(record_problems(repo)) == []
        assert list(hull_problems(repo)) == []
        target = entries[-1]
        repo.db["phases"].update_one({"_id": target.id}, {"$set": {"e_above_hull": 9.0}})
        repo.db["calculations"].update_one({"_id": "calc-2"}, {"$set": {"entry_id": "gone"}})
        problems = list(record_problems(repo)) + list(hull_problems(repo))
    finally:
        repo.close()
    assert len(problems) == 2, problems
    assert any("calculations calc-2: orphaned: entry_id gone" in p for p in problems)
    assert any(target.id in p and "9.000000" in p for p in problems)
    result = check(url)
    assert result.exit_code == 1
    assert len(problem_lines(result.output)) == 2


@pytest.mark.parametrize("tolerance", ["0.1"])
def test_the_tolerance_is_the_users(tmp_path, tolerance):
    path = tmp_path / "g.db"
    entries = fill(f"sqlite:///{path}")
    compound = next(e for e in entries if len(e.elements) == 3)
    conn = sqlite3.connect(path)
    stored = json.loads(conn.execute("SELECT doc FROM phases WHERE id=?",
                                     (compound.id,)).fetchone()[0])
    conn.close()
    _edit(path, "phases", compound.id, e_above_hull=stored["e_above_hull"] + 0.03)
    assert check(f"sqlite:///{path}").exit_code == 1
    result = runner.invoke(app, ["db", "check", "--tolerance", tolerance, "--db",
                                 f"sqlite:///{path}"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
