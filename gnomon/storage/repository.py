"""The one repository interface every backend implements.

Modelled on maggma's Store: a handful of verbs over named collections of records. Callers
(pipeline, models, dft, flows) never learn which backend they hold. Filters name indexed
fields only (``INDEXED_FIELDS``) so every query is served by an index on every backend:
a scalar means equality, a list/tuple/set means "one of".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from gnomon.storage.documents import (
    INDEXED_FIELDS,
    RECORD_TYPES,
    CalcState,
    Calculation,
    Candidate,
    Entry,
    ModelVersion,
    Phase,
    Prediction,
    Record,
    utcnow,
)

R = TypeVar("R", bound=Record)
Filters = dict[str, Any]


class StorageError(RuntimeError):
    """A backend could not do what was asked; nothing of the failed call was kept."""


class DatabaseMissing(StorageError):
    """A command that only reads named a database that does not exist (and must not make it)."""


def collection_of(record_type: type[Record]) -> str:
    for name, rtype in RECORD_TYPES.items():
        if rtype is record_type:
            return name
    raise StorageError(f"{record_type.__name__} is not a stored record type")


def check_collection(collection: str) -> str:
    """``collection`` if it is one gnomon keeps, else StorageError.

    Every verb of every backend calls this before anything else: the name is part of SQL text
    on SQLite and would silently create a collection on MongoDB.
    """
    if collection not in RECORD_TYPES:
        raise StorageError(
            f"unknown collection {collection!r}: gnomon keeps {sorted(RECORD_TYPES)}"
        )
    return collection


def check_filters(collection: str, filters: Filters | None) -> Filters:
    check_collection(collection)
    filters = dict(filters or {})
    allowed = set(INDEXED_FIELDS[collection]) | {"id"}
    unknown = set(filters) - allowed
    if unknown:
        raise StorageError(
            f"cannot filter {collection} by {sorted(unknown)}: indexed fields are {sorted(allowed)}"
        )
    return filters


def check_distinct_field(collection: str, field: str) -> str:
    """``field`` if ``distinct`` may read it (an indexed field or the id), else StorageError."""
    check_collection(collection)
    if field not in INDEXED_FIELDS[collection] and field != "id":
        raise StorageError(f"distinct needs an indexed field of {collection}, not {field!r}")
    return field


class Repository(ABC):
    """Idempotent, indexed storage for gnomon's records.

    Every write is an upsert by ``id`` or an insert that skips existing ids; a call that
    writes several records, and everything inside ``transaction()``, is all-or-nothing.
    """

    url: str

    # -- the verbs a backend implements ---------------------------------------------------
    @abstractmethod
    def upsert(self, collection: str, records: Sequence[Record]) -> int:
        """Insert or replace records by id; returns how many were written."""

    @abstractmethod
    def insert_new(self, collection: str, records: Sequence[Record]) -> list[str]:
        """Insert records whose id is not stored yet; returns the ids that were new."""

    @abstractmethod
    def find(
        self,
        collection: str,
        filters: Filters | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Raw documents matching ``filters``, in id order."""

    @abstractmethod
    def count(self, collection: str, filters: Filters | None = None) -> int: ...

    @abstractmethod
    def distinct(
        self, collection: str, field: str, filters: Filters | None = None
    ) -> list[Any]: ...

    @abstractmethod
    def existing_ids(self, collection: str, ids: Iterable[str]) -> set[str]: ...

    @abstractmethod
    def update_fields(
        self,
        collection: str,
        record_id: str,
        fields: dict[str, Any],
        expect: dict[str, Any] | None = None,
    ) -> bool:
        """Set ``fields`` on one record, only if its current values match ``expect``.

        The compare-and-set lets two processes race for the same calculation and exactly one
        win. Returns whether the record was changed.
        """

    @abstractmethod
    def delete(self, collection: str, ids: Iterable[str]) -> int: ...

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Repository]:
        """All writes inside happen together or not at all, and no other writer interleaves."""

    @abstractmethod
    def close(self) -> None: ...

    # -- typed conveniences shared by all backends ----------------------------------------
    def get(self, record_type: type[R], record_id: str) -> R | None:
        docs = list(self.find(collection_of(record_type), {"id": record_id}, limit=1))
        return record_type.from_doc(docs[0]) if docs else None

    def query(
        self, record_type: type[R], filters: Filters | None = None, limit: int | None = None
    ) -> Iterator[R]:
        for doc in self.find(collection_of(record_type), filters, limit):
            yield record_type.from_doc(doc)

    def put(self, records: Sequence[Record]) -> int:
        """Upsert records of one type."""
        if not records:
            return 0
        return self.upsert(collection_of(type(records[0])), records)

    def add_candidates(self, candidates: Sequence[Candidate]) -> list[str]:
        return self.insert_new("candidates", candidates)

    def entries(
        self, scheme: str | None = None, chemsys: str | Iterable[str] | None = None
    ) -> list[Entry]:
        filters: Filters = {}
        if scheme is not None:
            filters["scheme"] = scheme
        if chemsys is not None:
            filters["chemsys"] = chemsys if isinstance(chemsys, str) else list(chemsys)
        return list(self.query(Entry, filters))

    def phases(self, **filters: Any) -> list[Phase]:
        return list(self.query(Phase, {k: v for k, v in filters.items() if v is not None}))

    def schemes(self) -> list[str]:
        return sorted(self.distinct("entries", "scheme"))

    def predictions_for(
        self, candidate_ids: Iterable[str], model_version: str
    ) -> dict[str, Prediction]:
        ids = [Prediction.key(c, model_version) for c in candidate_ids]
        return {p.candidate_id: p for p in self.query(Prediction, {"id": ids})}

    def set_calculation_state(
        self,
        calc_id: str,
        state: CalcState,
        expect_state: CalcState | Iterable[CalcState] | None = None,
        **fields: Any,
    ) -> bool:
        values = {"state": CalcState(state).value, "updated_at": utcnow().isoformat(), **fields}
        expect = None
        if expect_state is not None:
            states = [expect_state] if isinstance(expect_state, str) else list(expect_state)
            expect = {"state": [CalcState(s).value for s in states]}
        return self.update_fields("calculations", calc_id, values, expect)

    def calculations(self, **filters: Any) -> list[Calculation]:
        return list(self.query(Calculation, {k: v for k, v in filters.items() if v is not None}))

    def latest_model(
        self, scheme: str | None = None, kind: str | None = None
    ) -> ModelVersion | None:
        filters = {k: v for k, v in {"scheme": scheme, "kind": kind}.items() if v is not None}
        models = sorted(self.query(ModelVersion, filters), key=lambda m: m.created_at)
        return models[-1] if models else None

    def stats(self) -> dict[str, int]:
        return {name: self.count(name) for name in RECORD_TYPES}

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
