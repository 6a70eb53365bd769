"""Entries and their phases read from a gnomon MongoDB database, for the served view.

The :class:`~gnomon.storage.reader.PhaseReader` of the MongoDB backend. Entries are read in id
order, a batch at a time, each batch's phases in one query by id. Its change token is the
counts of entries and phases with the newest entry's ``created_at`` and the newest phase's
``updated_at``: entries are only ever added and a recomputed hull updates its phases, so
every change gnomon makes moves one of the four.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pymongo import ASCENDING, DESCENDING

from gnomon.storage.mongodb.repository import MongoRepository
from gnomon.storage.reader import Document

_BATCH = 1000


def _newest(collection: Any, field: str) -> str | None:
    latest = list(collection.find({}, {field: 1}).sort(field, DESCENDING).limit(1))
    return str(latest[0].get(field)) if latest else None


def open_reader(url: str) -> MongoPhaseReader:
    """The reader of the database at a MongoDB URL (the registry's opener)."""
    return MongoPhaseReader(MongoRepository(url))


class MongoPhaseReader:
    """Read-only access to the entries and phases of ``repo``'s database; closing the reader
    closes ``repo``."""

    def __init__(self, repo: MongoRepository):
        self.repo = repo
        self.db = repo.db

    def entries_with_phases(self) -> Iterator[tuple[Document, Document | None]]:
        batch: list[Document] = []
        query = {"structure": {"$ne": None}}
        for entry in self.db["entries"].find(query).sort("_id", ASCENDING):
            batch.append(entry)
            if len(batch) >= _BATCH:
                yield from self._with_phases(batch)
                batch = []
        yield from self._with_phases(batch)

    def _with_phases(self, entries: list[Document]) -> Iterator[tuple[Document, Document | None]]:
        if not entries:
            return
        ids = [e["_id"] for e in entries]
        phases = {p.pop("_id"): p for p in self.db["phases"].find({"_id": {"$in": ids}})}
        for entry in entries:
            yield entry, phases.get(entry.pop("_id"))

    def change_token(self) -> tuple:
        return (self.db["entries"].count_documents({}), self.db["phases"].count_documents({}),
                _newest(self.db["phases"], "updated_at"),
                _newest(self.db["entries"], "created_at"))

    def close(self) -> None:
        self.repo.close()
