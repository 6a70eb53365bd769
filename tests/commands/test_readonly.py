"""Commands that only read never write (issue 27, item 3): `phases`, `hull`, `db stats` and
`model list|show|predict|evaluate` leave the database file byte-identical, create no file
beside it, register no model, and a missing SQLite file is a one-line error naming its path,
with nothing created."""

from __future__ import annotations

import gc
import hashlib
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.cif import CifWriter
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.models import pretrained
from gnomon.storage import DatabaseMissing, Entry, StorageError, open_repository

runner = CliRunner()
SCHEME = "mlip-chgnet-0.3.0"
HAS_MODEL = pretrained.available()


def _structures() -> list[tuple[Structure, float]]:
    li = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    o = Structure(Lattice.cubic(5.0), ["O", "O"], [[0, 0, 0], [0.25, 0, 0]])
    li2o = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.61), ["O", "Li"], [[0, 0, 0], [0.25, 0.25, 0.25]]
    )
    return [(li, -1.9), (o, -4.9), (li2o, -4.8)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A database with Li-O entries and a CIF to predict, made once."""
    folder = tmp_path_factory.mktemp("readonly")
    entries = folder / "entries.json"
    entries.write_text(json.dumps(
        [ComputedStructureEntry(s, e * len(s)).as_dict() for s, e in _structures()]
    ))
    db = f"sqlite:///{folder / 'data' / 'g.db'}"
    result = runner.invoke(app, ["db", "import", str(entries), "--scheme", SCHEME, "--db", db])
    assert result.exit_code == 0, result.output
    # connections the import left on other threads of this process (a CLI process closes
    # them as it exits): collected, and the WAL folded in, so the snapshot starts clean
    gc.collect()
    sqlite3.connect(folder / "data" / "g.db").close()
    assert sorted(p.name for p in (folder / "data").iterdir()) == ["g.db"]
    CifWriter(_structures()[2][0]).write_file(folder / "Li2O.cif")
    return folder


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


READ_ONLY = [
    ["phases"],
    ["phases", "--format", "json", "--stable"],
    ["hull", "Li-O"],
    ["db", "stats"],
    ["model", "list"],
    ["campaign", "status"],
    ["jobs", "status", "--no-refresh"],
]
WITH_MODEL = [
    ["model", "show", "pretrained"],
    ["model", "show", "pretrained", "--json"],
    ["model", "predict", "{cif}", "--model", "pretrained"],
    ["model", "evaluate", "--model", "pretrained"],
]


@pytest.mark.parametrize(
    "args",
    READ_ONLY + [pytest.param(a, marks=pytest.mark.skipif(not HAS_MODEL, reason="no weights"))
                 for a in WITH_MODEL],
    ids=lambda a: " ".join(a[:3]),
)
def test_read_only_commands_leave_the_database_byte_identical(workspace, args):
    data = workspace / "data"
    before = _snapshot(data)
    db = f"sqlite:///{data / 'g.db'}"
    argv = [a.replace("{cif}", str(workspace / "Li2O.cif")) for a in args]
    result = runner.invoke(app, [*argv, "--db", db])
    assert result.exit_code == 0, result.output
    assert _snapshot(data) == before  # same bytes, and no -wal, -shm or other file left
    repo = open_repository(db, read_only=True)
    try:
        assert repo.count("models") == 0  # `model show pretrained` registered nothing
    finally:
        repo.close()


@pytest.mark.parametrize(
    "args",
    READ_ONLY + [["hull", "Li-O"]]
    + [pytest.param(a, marks=pytest.mark.skipif(not HAS_MODEL, reason="no weights"))
       for a in (["model", "predict", "{cif}", "--model", "pretrained"],
                 ["model", "show", "not-a-model"], ["model", "evaluate", "--model", "pretrained"])],
    ids=lambda a: " ".join(a[:3]),
)
def test_a_missing_database_is_one_line_naming_it_and_nothing_is_created(workspace, tmp_path,
                                                                         args):
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    argv = [a.replace("{cif}", str(workspace / "Li2O.cif")) for a in args]
    if args[:2] == ["model", "predict"]:  # the shipped model needs no database: it predicts
        result = runner.invoke(app, [*argv, "--db", f"sqlite:///{missing}"])
        assert result.exit_code == 0, result.output
        assert "no database at" in " ".join(result.output.split())
    else:
        result = runner.invoke(app, [*argv, "--db", f"sqlite:///{missing}"])
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in result.output, result.output
        assert str(missing) in lines[0] and "no gnomon database" in lines[0]
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.skipif(not HAS_MODEL, reason="no weights")
def test_a_first_prediction_without_a_database_uses_the_shipped_model(workspace, tmp_path):
    missing = tmp_path / "none.db"
    result = runner.invoke(app, ["model", "predict", str(workspace / "Li2O.cif"), "--json",
                                 "--db", f"sqlite:///{missing}"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["model"].startswith("pretrained-")
    assert not missing.exists()


@pytest.mark.skipif(not HAS_MODEL, reason="no weights")
def test_showing_the_pretrained_model_does_not_make_it_the_model_predict_uses(workspace,
                                                                              tmp_path):
    db = f"sqlite:///{tmp_path / 'g.db'}"
    entries = workspace / "entries.json"
    assert runner.invoke(app, ["db", "import", str(entries), "--scheme", SCHEME,
                               "--db", db]).exit_code == 0
    assert runner.invoke(app, ["model", "show", "pretrained", "--db", db]).exit_code == 0
    result = runner.invoke(app, ["model", "predict", str(workspace / "Li2O.cif"), "--db", db])
    assert result.exit_code == 1
    assert "no model has been trained yet" in " ".join(result.output.split())


def test_a_failing_predict_creates_no_database(workspace, tmp_path):
    new = tmp_path / "new.db"
    result = runner.invoke(app, ["model", "predict", str(tmp_path / "missing.cif"),
                                 "--db", f"sqlite:///{new}"])
    assert result.exit_code == 1 and "missing.cif" in result.output
    assert not new.exists()


def test_a_read_only_repository_refuses_writes_and_reads_an_older_schema(tmp_path):
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn:  # an older gnomon's: no schemes table
        conn.execute("CREATE TABLE entries (id TEXT PRIMARY KEY, doc BLOB NOT NULL, scheme, "
                     "chemsys, reduced_formula, candidate_id, campaign, round)")
    before = path.read_bytes()
    repo = open_repository(f"sqlite:///{path}", read_only=True)
    try:
        assert repo.count("schemes") == 0 and list(repo.find("models")) == []
        assert repo.stats()["entries"] == 0
        li = _structures()[0][0]
        from gnomon.pipeline.thermo.entries import entry_from_structure

        with pytest.raises(StorageError, match="read-only"):
            repo.put([entry_from_structure(li, -3.8, SCHEME)])
        assert list(repo.query(Entry)) == []
    finally:
        repo.close()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["old.db"]
    with pytest.raises(DatabaseMissing, match="no gnomon database at"):
        open_repository(f"sqlite:///{tmp_path / 'absent.db'}", read_only=True)
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("hello\n" * 200)
    with pytest.raises(StorageError, match="not a SQLite database"):
        open_repository(f"sqlite:///{not_sqlite}", read_only=True)
