"""OPTIMADE structures over a gnomon MongoDB database: the MongoDB backend's serve view.

Filters become MongoDB queries through gnomon's predicate (:mod:`.filter`; the same meaning
the SQLite view compiles), run against a *view collection*, ``optimade_structures``, in the same
database: one document per structure
(:func:`gnomon.storage.optimade.resources.structure_row`), indexed for the common filters.
gnomon's own collections are only read, through :class:`~.reader.MongoPhaseReader`; the view
is derived data the server owns (like the ``_locks`` collection the repository keeps), so
deleting it loses nothing.

How the view stays current: it is rebuilt when the server starts (into a fresh collection,
renamed over the old one when complete, so a second server never reads half a view). After
that, at most every ``refresh_s`` seconds a request compares the counts of entries and phases
and the latest phase update with those the view was built from; on a change a background
thread rebuilds it the same way while the old view keeps answering.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from optimade.models import StructureResource
from optimade.server.config import ServerConfig
from optimade.server.mappers import StructureMapper
from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.errors import ExecutionTimeout

from gnomon.storage.mongodb.filter import MongoFilterTransformer
from gnomon.storage.mongodb.reader import MongoPhaseReader, open_reader
from gnomon.storage.optimade.collection import ReadOnlyCollection
from gnomon.storage.optimade.limits import QUERY_TIME_LIMIT_S
from gnomon.storage.optimade.refresh import RefreshingView
from gnomon.storage.optimade.resources import served_rows

log = logging.getLogger(__name__)

VIEW = "optimade_structures"
_BATCH = 1000
_INDEXED = ("nelements", "nsites", "chemical_formula_reduced", "chemical_formula_anonymous",
            "e_above_hull", "formation_energy_per_atom", "is_stable", "scheme", "campaign",
            "round", "last_modified")


class MongoView(RefreshingView):
    """The ``optimade_structures`` collection of one gnomon MongoDB database, built from what
    its reader yields."""

    def __init__(self, reader: MongoPhaseReader, refresh_s: float = 30.0):
        self.reader = reader
        self.db = reader.db
        self._start_watching(refresh_s)
        self.size = self._build()
        self.generation = 1

    @property
    def structures(self) -> Collection:
        """The view collection the queries run against."""
        return self.db[VIEW]

    def collection(self, config: ServerConfig,
                   time_limit_s: float = QUERY_TIME_LIMIT_S) -> MongoStructureCollection:
        return MongoStructureCollection(self, config, time_limit_s)

    def _build(self) -> int:
        start = time.perf_counter()
        staging = self.db[f"{VIEW}_build_{uuid.uuid4().hex[:8]}"]
        batch: list[dict[str, Any]] = []
        for row in served_rows(self.reader):
            batch.append({"_id": row["id"], **row})
            if len(batch) >= _BATCH:
                staging.insert_many(batch, ordered=False)
                batch = []
        if batch:
            staging.insert_many(batch, ordered=False)
        n = staging.count_documents({})
        _index(staging)
        if n:
            staging.rename(VIEW, dropTarget=True)
        else:
            staging.drop()
            self.db[VIEW].drop()
        log.info("OPTIMADE view of %r: %d structures in %.1f s", self.reader.repo, n,
                 time.perf_counter() - start)
        return n

    def _rebuild(self) -> None:
        self.size = self._build()
        self.generation += 1

    def close(self) -> None:
        self.reader.close()


def _index(staging: Collection) -> None:
    staging.create_index([("id", ASCENDING)], unique=True)
    staging.create_index([("elements", ASCENDING), ("e_above_hull", ASCENDING)])
    for field in _INDEXED:
        staging.create_index([(field, ASCENDING)])


def open_view(url: str, refresh_s: float) -> MongoView:
    """The served view of the database at a MongoDB URL (the registry's opener)."""
    return MongoView(open_reader(url), refresh_s=refresh_s)


class MongoStructureCollection(ReadOnlyCollection):
    """``/structures`` over a :class:`MongoView`; each query carries the request's remaining
    time as ``maxTimeMS``, so the server stops it there."""

    def __init__(self, view: MongoView, config: ServerConfig,
                 time_limit_s: float = QUERY_TIME_LIMIT_S):
        mapper = StructureMapper(config)
        super().__init__(StructureResource, mapper, MongoFilterTransformer(mapper=mapper), config,
                         time_limit_s)
        self.view = view
        self._local = threading.local()

    def __len__(self) -> int:
        return self.view.size

    @contextmanager
    def time_limited(self, deadline: float) -> Iterator[None]:
        self._local.deadline = deadline
        try:
            yield
        except ExecutionTimeout:
            raise self.over_time() from None
        finally:
            self._local.deadline = None

    def _max_time_ms(self) -> int:
        deadline = getattr(self._local, "deadline", None) or self.deadline()
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            raise self.over_time()
        return left_ms

    def count(self, **kwargs: Any) -> int:
        with self.time_limited(self.deadline()):
            return self.view.structures.count_documents(kwargs.get("filter") or {},
                                                        maxTimeMS=self._max_time_ms())

    def _run_db_query(self, criteria: dict[str, Any], single_entry: bool = False):
        self.view.maybe_refresh()
        query = criteria.get("filter") or {}
        limit = int(criteria.get("limit", self.config.page_limit))
        skip = int(criteria.get("skip", 0) or 0)
        cursor = self.view.structures.find(query, {"_id": False}).sort(
            [(f, ASCENDING if d > 0 else DESCENDING) for f, d in self.order(criteria)]
        ).skip(skip).max_time_ms(self._max_time_ms())
        if limit:
            cursor = cursor.limit(limit)
        results = [self.public(doc) for doc in cursor] if limit else []
        if single_entry:
            return results, len(results), False
        total = self.view.structures.count_documents(query, maxTimeMS=self._max_time_ms())
        return results, total, skip + len(results) < total
