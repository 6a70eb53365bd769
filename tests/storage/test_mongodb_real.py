"""The MongoDB backend against a real server; skipped visibly without one.

With GNOMON_TEST_MONGO_URI set the whole contract suite (test_contract.py) also runs against
the server. This file checks what only a server can show: writes land in the database the URL
names and a second connection reads them, every indexed field has an index on the server,
the bulk upsert path (mongomock takes another) replaces by id, and a failed transaction is
undone and releases the write lock.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator

import pytest

from gnomon.storage import Entry, StorageError, open_repository
from gnomon.storage.documents import INDEXED_FIELDS
from gnomon.storage.mongodb import MongoRepository

pytestmark = pytest.mark.skipif(
    not os.environ.get("GNOMON_TEST_MONGO_URI"),
    reason="no MongoDB server: set GNOMON_TEST_MONGO_URI=mongodb://host:port to run the "
    "contract suite against a real server (mongomock covers it otherwise)",
)


def _entry(i: int, energy: float = -3.0) -> Entry:
    return Entry(id=f"e{i}", scheme="s1", formula="Li2O", reduced_formula="Li2O", chemsys="Li-O",
                 elements=["Li", "O"], nsites=3, composition={"Li": 2.0, "O": 1.0}, energy=energy,
                 uncorrected_energy=energy, energy_per_atom=energy / 3,
                 created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


@pytest.fixture
def url() -> Iterator[str]:
    """A database of its own on the server, dropped afterwards."""
    name = f"gnomon_real_{uuid.uuid4().hex[:8]}"
    url = f"{os.environ['GNOMON_TEST_MONGO_URI'].rstrip('/')}/{name}"
    yield url
    with open_repository(url) as repo:
        repo.client.drop_database(name)


def _open(url: str) -> MongoRepository:
    repo = open_repository(url)
    assert isinstance(repo, MongoRepository)
    return repo


def test_writes_land_in_the_named_database_and_another_connection_reads_them(url):
    name = url.rsplit("/", 1)[-1]
    with _open(url) as writer:
        assert writer.db.name == name
        assert writer.put([_entry(1), _entry(2)]) == 2
    with _open(url) as reader:
        assert reader.get(Entry, "e1") == _entry(1)
        assert reader.count("entries", {"chemsys": "Li-O", "scheme": "s1"}) == 2
        assert reader.count("entries", {"chemsys": "Mn-O"}) == 0
        assert reader.client[name]["entries"].count_documents({}) == 2


def test_every_indexed_field_has_a_server_index(url):
    with _open(url) as repo:
        for collection, fields in INDEXED_FIELDS.items():
            info = repo.db[collection].index_information()
            leading = {spec["key"][0][0] for spec in info.values()}
            assert set(fields) <= leading, (collection, sorted(leading))


def test_upsert_replaces_by_id(url):
    with _open(url) as repo:
        repo.put([_entry(1)])
        assert repo.put([_entry(1, energy=-6.0), _entry(2)]) == 2
        assert repo.count("entries") == 2
        assert repo.get(Entry, "e1").energy == -6.0


def test_failed_transaction_is_undone_and_releases_the_lock(url):
    with _open(url) as repo:
        repo.put([_entry(1)])
        with pytest.raises(RuntimeError, match="mid-ingest"):
            with repo.transaction():
                repo.put([_entry(1, energy=-9.0)])
                repo.insert_new("entries", [_entry(2)])
                raise RuntimeError("crash mid-ingest")
        assert repo.get(Entry, "e1") == _entry(1)
        assert repo.existing_ids("entries", ["e1", "e2"]) == {"e1"}
        assert repo.db["_locks"].count_documents({}) == 0
        with pytest.raises(StorageError, match="unknown collection"):
            repo.insert_new("entry", [_entry(3)])
        assert "entry" not in repo.db.list_collection_names()
