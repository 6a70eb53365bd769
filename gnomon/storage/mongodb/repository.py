"""The MongoDB repository: for shared and HPC use, where compute nodes and the orchestrator share
one database.

Indexes are created on first use. MongoDB only has multi-document transactions on replica
sets, so ``transaction()`` works everywhere by two means: a lease in a ``_locks`` collection
keeps other gnomon writers out, and an undo log restores every document the block touched if
it raises. ``mongomock://host/db`` URLs give an in-memory server for tests: one per host name
and process, so every repository opened on the same URL sees the same data, as with a real
server. A URL's password is never shown: errors name it through ``gnomon.credentials``.

Every problem with the URL is one line naming the (masked) URL: one pymongo cannot parse
(an unescaped ``@`` or ``/`` in the password, a port that is no number, an unknown option),
and a server that does not answer within :data:`REACH_TIMEOUT_S`, named by host with the
socket's own reason, instead of pymongo's topology description. Opened ``read_only``, the
repository creates no index and refuses every write.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import mongomock
import pymongo
from mongomock.store import ServerStore
from pymongo import ASCENDING, MongoClient, ReplaceOne
from pymongo.errors import (
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from gnomon.credentials import mask_secrets, mask_url
from gnomon.storage.documents import (
    COMPOUND_INDEXES,
    INDEXED_FIELDS,
    RECORD_TYPES,
    Record,
    single_field_indexes,
)
from gnomon.storage.repository import (
    Filters,
    Repository,
    StorageError,
    check_collection,
    check_distinct_field,
    check_filters,
)

_LOCK_LEASE_S = 600.0

REACH_TIMEOUT_S = 3.0
"""Seconds the first contact with the server may take before the command says it cannot
reach it (a running server answers in milliseconds; later operations keep pymongo's own
selection timeout, which rides out a replica set's election)."""
_SELECTION_TIMEOUT_MS = 5000

#: the in-memory servers behind ``mongomock://`` URLs, by host name (credentials ignored)
_MOCK_SERVERS: dict[str, Any] = {}


def _mock_client(url: str) -> Any:
    """A mongomock client on the process's in-memory server for ``url``'s host."""
    host = url[len("mongomock://") :].split("/", 1)[0].rsplit("@", 1)[-1]
    store = _MOCK_SERVERS.setdefault(host, ServerStore())
    return mongomock.MongoClient(_store=store)


def _mongo_filter(filters: Filters) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for field, value in filters.items():
        key = "_id" if field == "id" else field
        if isinstance(value, (list, tuple, set, frozenset)):
            query[key] = {"$in": list(value)}
        else:
            query[key] = value
    return query


def open_mongodb(url: str, read_only: bool = False) -> MongoRepository:
    """The repository at a ``mongodb://``, ``mongodb+srv://`` or ``mongomock://`` URL (the
    registry's opener)."""
    return MongoRepository(url, read_only=read_only)


def _shown(url: str) -> str:
    """``url`` with every credential masked, even in a URL too malformed to parse."""
    return mask_secrets(mask_url(url))


def _secret_pieces(url: str) -> list[str]:
    """The pieces of the password in ``url`` long enough to recognise in a message."""
    match = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:(?P<pw>.*)@", url)
    if not match:
        return []
    return [p for p in re.split(r"[/@:?#&=%]", match["pw"]) if len(p) >= 3]


def _reason(url: str, exc: BaseException | str) -> str:
    """pymongo's explanation on one line, or a generic one where it quotes part of the URL's
    password (``Bad database name "ss@host/db"`` for an unescaped ``/`` in it)."""
    text = " ".join(str(exc).split())
    text = text.split(" (configured timeouts")[0].split(", Timeout:")[0]
    text = text.split(", full error:")[0].split(" Refer to docstring")[0]
    if any(piece in text for piece in _secret_pieces(url)):
        return "it does not parse; escape the user name and password with urllib.parse.quote_plus"
    return mask_secrets(text)


def _client(url: str) -> MongoClient:
    """A client for ``url``, or StorageError saying in one line why the URL is unusable."""
    options: dict[str, Any] = {"tz_aware": True}
    if "serverselectiontimeoutms=" not in url.lower():
        options["serverSelectionTimeoutMS"] = _SELECTION_TIMEOUT_MS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            client = MongoClient(url, **options)
        except (PyMongoError, ValueError, TypeError) as exc:
            raise StorageError(
                f"malformed MongoDB URL {_shown(url)}: {_reason(url, exc)}"
            ) from None
    problems = [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning) and "pymongo" in (w.filename or "")
    ]
    if problems:
        client.close()
        raise StorageError(f"malformed MongoDB URL {_shown(url)}: {_reason(url, problems[0])}")
    return client


class MongoRepository(Repository):
    """Repository in a MongoDB database (``mongodb://host:port/dbname``)."""

    def __init__(
        self,
        url: str,
        client: Any | None = None,
        database: str | None = None,
        read_only: bool = False,
    ):
        self.url = url
        self.read_only = read_only
        if client is None:
            client = _mock_client(url) if url.startswith("mongomock://") else _client(url)
        self.client = client
        self._mock = type(client).__module__.startswith("mongomock")
        path = url.rsplit("/", 1)[-1].split("?")[0] if "/" in url[12:] else ""
        name = database or path or "gnomon"
        self.db = client[name]
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._undo: list[tuple[str, str, dict | None]] | None = None
        self._depth = 0
        self._reach()
        if not read_only:
            self._ensure_indexes()

    def __repr__(self) -> str:
        return f"MongoRepository({mask_url(self.url)!r})"

    def _reach(self) -> None:
        """Ping the server within REACH_TIMEOUT_S; one line naming the hosts if it does not
        answer, or what it answered if it refused (authentication, permissions)."""
        if self._mock:
            return
        try:
            with pymongo.timeout(REACH_TIMEOUT_S):
                self.client.admin.command("ping")
        except ServerSelectionTimeoutError as exc:
            hosts = ", ".join(f"{h}:{p}" for h, p in sorted(self.client.topology_description
                                                               .server_descriptions()))
            self.client.close()
            raise StorageError(
                f"cannot reach MongoDB at {_shown(self.url)}: no answer from {hosts or 'its host'} "
                f"within {REACH_TIMEOUT_S:g} s ({_reason(self.url, exc)})"
            ) from None
        except OperationFailure as exc:
            self.client.close()
            detail = (exc.details or {}).get("errmsg") or str(exc)
            raise StorageError(
                f"MongoDB at {_shown(self.url)} refused gnomon: {_reason(self.url, detail)}"
            ) from None
        except PyMongoError as exc:
            self.client.close()
            raise StorageError(
                f"cannot use MongoDB at {_shown(self.url)}: {_reason(self.url, exc)}"
            ) from None

    def _ensure_indexes(self) -> None:
        try:
            for name in INDEXED_FIELDS:
                for field in single_field_indexes(name):
                    self.db[name].create_index([(field, ASCENDING)])
                for compound in COMPOUND_INDEXES.get(name, ()):
                    self.db[name].create_index([(f, ASCENDING) for f in compound])
        except PyMongoError as exc:
            raise StorageError(
                f"cannot reach MongoDB at {_shown(self.url)}: {_reason(self.url, exc)}"
            ) from None

    # -- the undo log behind transaction() ------------------------------------------------
    def _remember(self, collection: str, ids: list[str]) -> None:
        if self._undo is None:
            return
        before = {d["_id"]: d for d in self.db[collection].find({"_id": {"$in": ids}})}
        for i in ids:
            self._undo.append((collection, i, before.get(i)))

    @contextmanager
    def _locked(self):
        locks = self.db["_locks"]
        deadline = time.monotonic() + _LOCK_LEASE_S
        while True:
            now = time.time()
            try:
                locks.update_one(
                    {"_id": "write", "$or": [{"owner": self._owner}, {"expires": {"$lt": now}}]},
                    {"$set": {"owner": self._owner, "expires": now + _LOCK_LEASE_S}},
                    upsert=True,
                )
                break
            except DuplicateKeyError:
                if time.monotonic() > deadline:
                    raise StorageError("timed out waiting for the gnomon write lock") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            locks.delete_one({"_id": "write", "owner": self._owner})

    def transaction(self):
        if self.read_only:
            raise StorageError(f"{_shown(self.url)} is open read-only: this command must not write")

        @contextmanager
        def _tx():
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            with self._locked():
                self._undo, self._depth = [], 1
                try:
                    yield self
                except BaseException:
                    for collection, rid, doc in reversed(self._undo):
                        if doc is None:
                            self.db[collection].delete_one({"_id": rid})
                        else:
                            self.db[collection].replace_one({"_id": rid}, doc, upsert=True)
                    raise
                finally:
                    self._undo, self._depth = None, 0

        return _tx()

    # -- writes ---------------------------------------------------------------------------
    @staticmethod
    def _doc(record: Record) -> dict[str, Any]:
        doc = record.to_doc()
        doc["_id"] = doc["id"]
        return doc

    def upsert(self, collection: str, records: Sequence[Record]) -> int:
        check_collection(collection)
        if not records:
            return 0
        docs = [self._doc(r) for r in records]
        with self.transaction():
            self._remember(collection, [d["_id"] for d in docs])
            if self._mock:  # mongomock's bulk_write lags pymongo's operation classes
                for d in docs:
                    self.db[collection].replace_one({"_id": d["_id"]}, d, upsert=True)
            else:
                self.db[collection].bulk_write(
                    [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], ordered=True
                )
        return len(docs)

    def insert_new(self, collection: str, records: Sequence[Record]) -> list[str]:
        check_collection(collection)
        if not records:
            return []
        new: list[str] = []
        with self.transaction():
            seen = self.existing_ids(collection, [r.id for r in records])
            fresh = []
            for record in records:
                if record.id not in seen:
                    seen.add(record.id)
                    fresh.append(self._doc(record))
            if fresh:
                self._remember(collection, [d["_id"] for d in fresh])
                self.db[collection].insert_many(fresh, ordered=True)
                new = [d["_id"] for d in fresh]
        return new

    def update_fields(self, collection, record_id, fields, expect=None) -> bool:
        check_collection(collection)
        query: dict[str, Any] = {"_id": record_id}
        for key, wanted in (expect or {}).items():
            query[key] = {"$in": list(wanted)} if isinstance(wanted, (list, tuple, set)) else wanted
        with self.transaction():
            current = self.db[collection].find_one(query)
            if current is None:
                return False
            doc = {**current, **fields}
            record = RECORD_TYPES[collection].from_doc(doc)  # validate before writing
            self._remember(collection, [record_id])
            result = self.db[collection].replace_one(query, self._doc(record))
        return result.modified_count == 1 or result.matched_count == 1

    def delete(self, collection: str, ids: Iterable[str]) -> int:
        check_collection(collection)
        ids = list(ids)
        with self.transaction():
            self._remember(collection, ids)
            return self.db[collection].delete_many({"_id": {"$in": ids}}).deleted_count

    # -- reads ----------------------------------------------------------------------------
    def find(self, collection, filters=None, limit=None) -> Iterator[dict[str, Any]]:
        query = _mongo_filter(check_filters(collection, filters))
        cursor = self.db[collection].find(query).sort("_id", ASCENDING)
        if limit is not None:
            cursor = cursor.limit(int(limit))
        for doc in cursor:
            doc.pop("_id", None)
            yield doc

    def count(self, collection, filters=None) -> int:
        query = _mongo_filter(check_filters(collection, filters))
        return self.db[collection].count_documents(query)

    def distinct(self, collection, field, filters=None) -> list[Any]:
        check_distinct_field(collection, field)
        query = _mongo_filter(check_filters(collection, filters))
        key = "_id" if field == "id" else field
        return [v for v in self.db[collection].distinct(key, query) if v is not None]

    def existing_ids(self, collection, ids) -> set[str]:
        check_collection(collection)
        ids = list(ids)
        return {d["_id"] for d in self.db[collection].find({"_id": {"$in": ids}}, {"_id": 1})}

    def close(self) -> None:
        if not self.url.startswith("mongomock://"):
            self.client.close()
