"""`gnomon db backup` and `gnomon db restore`: a backup taken while rounds are being ingested is
one committed state, restores, and checks clean; a restore never overwrites records unless
told to; MongoDB backups are mongodump's layout (BSON plus index metadata) and restore with
their indexes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import bson
import pytest
from bson import json_util
from storage_helpers import REFS, SCHEME, fill, grid_structure
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import open_repository
from gnomon.storage.documents import INDEXED_FIELDS, RECORD_TYPES

runner = CliRunner()


def gnomon(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gnomon.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


def _ingest_rounds(url: str, states: list[set[str]], stop: threading.Event) -> None:
    """Rounds of new entries, each ingested with its hull update in one transaction, until
    stopped; after each commit the entry ids then stored are appended to ``states``."""
    rng = random.Random(5)
    repo = open_repository(url)
    try:
        index = 0
        while not stop.is_set():
            index += 1
            batch = []
            for k in range(30):
                species = [el for el in REFS for _ in range(rng.randint(0, 2))] or ["Li", "O"]
                energy = sum(REFS[el] for el in species) + rng.uniform(-0.8, 0.3) * len(species)
                batch.append(make_entry(None, energy, SCHEME, structure=grid_structure(species),
                                        source=f"round-{index}-{k}"))
            HullEngine(repo).ingest(batch)
            states.append({d["id"] for d in repo.find("entries")})
    finally:
        repo.close()


@pytest.mark.slow
def test_backup_while_ingesting_is_one_committed_state_and_restores_clean(tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    fill(url)
    repo = open_repository(url)
    states = [{d["id"] for d in repo.find("entries")}]
    repo.close()
    stop = threading.Event()
    writer = threading.Thread(target=_ingest_rounds, args=(url, states, stop))
    writer.start()
    try:
        while len(states) < 3:  # the writer is well under way
            writer.join(0.1)
        backups = []
        for i in range(3):  # each backup lands at another moment of the writes
            dest = tmp_path / f"backup-{i}.db"
            done = gnomon("db", "backup", str(dest), "--db", url)
            assert done.returncode == 0, done.stderr
            assert f"-> {dest}" in done.stdout
            backups.append(dest)
    finally:
        stop.set()
        writer.join()
    for i, dest in enumerate(backups):
        assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []
        target = f"sqlite:///{tmp_path / f'restored-{i}.db'}"
        done = gnomon("db", "restore", str(dest), "--db", target)
        assert done.returncode == 0, done.stderr
        checked = gnomon("db", "check", "--db", target)
        assert checked.returncode == 0, checked.stderr
        restored = open_repository(target)
        ids = {d["id"] for d in restored.find("entries")}
        assert restored.count("phases") == len(ids)  # every entry with its phase
        restored.close()
        assert ids in states  # one committed state: no half-ingested round


def test_restore_refuses_a_database_with_records_unless_forced(tmp_path):
    source = f"sqlite:///{tmp_path / 'a.db'}"
    other = f"sqlite:///{tmp_path / 'b.db'}"
    fill(source, seed=1)
    fill(other, seed=2, n=5)
    dest = tmp_path / "a-backup.db"
    assert runner.invoke(app, ["db", "backup", str(dest), "--db", source]).exit_code == 0
    again = runner.invoke(app, ["db", "backup", str(dest), "--db", source])
    assert again.exit_code == 1 and "exists already" in again.output

    refused = runner.invoke(app, ["db", "restore", str(dest), "--db", other])
    assert refused.exit_code == 1
    assert "is not empty" in refused.output and "--force" in refused.output
    repo = open_repository(other)
    assert repo.count("entries") == 8  # untouched: 3 references + 5
    repo.close()

    forced = runner.invoke(app, ["db", "restore", str(dest), "--force", "--db", other])
    assert forced.exit_code == 0, forced.output
    a, b = open_repository(source), open_repository(other)
    try:
        for name in RECORD_TYPES:
            assert list(a.find(name)) == list(b.find(name)), name
    finally:
        a.close()
        b.close()

    not_a_backup = tmp_path / "notes.db"
    not_a_backup.write_text("not a database")
    bad = runner.invoke(app, ["db", "restore", str(not_a_backup), "--force", "--db", other])
    assert bad.exit_code == 1 and "not a usable backup" in bad.output


def test_mongodb_backup_is_mongodump_layout_and_restores_with_indexes(tmp_path):
    source = "mongomock://backup-src/gnomon"
    fill(source)
    dest = tmp_path / "dump"
    done = runner.invoke(app, ["db", "backup", str(dest), "--db", source])
    assert done.exit_code == 0, done.output
    manifest = json.loads((dest / "gnomon-backup.json").read_text())
    src = open_repository(source)
    try:
        for name in RECORD_TYPES:
            docs = list(bson.decode_file_iter((dest / "gnomon" / f"{name}.bson").open("rb")))
            assert len(docs) == src.count(name) == manifest["collections"][name]
            meta = json_util.loads((dest / "gnomon" / f"{name}.metadata.json").read_text())
            keys = {tuple(index["key"]) for index in meta["indexes"]}
            for field in INDEXED_FIELDS[name]:
                assert any(field in key for key in keys), (name, field)
    finally:
        src.close()

    target = "mongomock://backup-dst/gnomon"
    fill(target, seed=9, n=2)
    refused = runner.invoke(app, ["db", "restore", str(dest), "--db", target])
    assert refused.exit_code == 1 and "--force" in refused.output
    done = runner.invoke(app, ["db", "restore", str(dest), "--force", "--db", target])
    assert done.exit_code == 0, done.output
    a, b = open_repository(source), open_repository(target)
    try:
        for name in RECORD_TYPES:
            assert list(a.find(name)) == list(b.find(name)), name
            assert set(a.db[name].index_information()) == set(b.db[name].index_information())
        assert "entries__restore" not in b.db.list_collection_names()
    finally:
        a.close()
        b.close()
    assert runner.invoke(app, ["db", "check", "--db", target]).exit_code == 0


def test_a_sqlite_backup_does_not_restore_into_mongodb(tmp_path):
    source = f"sqlite:///{tmp_path / 'a.db'}"
    fill(source, n=3)
    dest = tmp_path / "a.bak"
    assert runner.invoke(app, ["db", "backup", str(dest), "--db", source]).exit_code == 0
    wrong = runner.invoke(app, ["db", "restore", str(dest), "--db", "mongomock://x/gnomon"])
    assert wrong.exit_code == 1
    assert "a MongoDB database restores from a backup directory" in wrong.output
    assert Path(dest).is_file()
