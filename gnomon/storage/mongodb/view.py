"""OPTIMADE structures over a gnomon MongoDB database.

Filters become MongoDB queries through ``optimade``'s own MongoTransformer (the one its
reference server uses), run against a *view collection*, ``optimade_structures``, in the same
database: one document per structure (:func:`gnomon.serve.resources.structure_row`), indexed
for the common filters. gnomon's own collections are only read; the view is derived data the
server owns (like the ``_locks`` collection the repository keeps), so deleting it loses
nothing.

How the view stays current: it is rebuilt when the server starts (into a fresh collection,
renamed over the old one when complete, so a second server never reads half a view). After
that, at most every ``refresh_s`` seconds a request compares the counts of entries and phases
and the latest phase update with those the view was built from; on a change a background
thread rebuilds it the same way while the old view keeps answering.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from optimade.filtertransformers.mongo import MongoTransformer, recursive_postprocessing
from optimade.models import StructureResource
from optimade.server.config import ServerConfig
from optimade.server.mappers import StructureMapper
from pymongo import ASCENDING, DESCENDING

from gnomon.serve.collection import ReadOnlyCollection
from gnomon.serve.refresh import RefreshingView
from gnomon.serve.resources import structure_row
from gnomon.storage.mongodb import MongoRepository

log = logging.getLogger(__name__)

VIEW = "optimade_structures"
_BATCH = 1000
_INDEXED = ("nelements", "nsites", "chemical_formula_reduced", "chemical_formula_anonymous",
            "e_above_hull", "formation_energy_per_atom", "is_stable", "scheme", "campaign",
            "round", "last_modified")


class GnomonMongoTransformer(MongoTransformer):
    """optimade's MongoTransformer, plus gnomon's boolean field: the filter grammar has no
    booleans, so ``_gnomon_is_stable=1`` (or ``="true"``) means true and ``=0`` false."""

    BOOLEAN_FIELDS = ("is_stable",)

    def postprocess(self, query: dict[str, Any]) -> dict[str, Any]:
        def is_boolean(prop: str, expr: Any) -> bool:
            return prop in self.BOOLEAN_FIELDS and isinstance(expr, dict)

        def as_bool(subdict: dict[str, Any], prop: str, expr: dict[str, Any]) -> dict[str, Any]:
            subdict[prop] = {op: _as_bool(v) if op != "#known" else v for op, v in expr.items()}
            return subdict

        return super().postprocess(recursive_postprocessing(query, is_boolean, as_bool))


def _as_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value  # a value no boolean equals: matches nothing, as on SQLite


class MongoView(RefreshingView):
    """The ``optimade_structures`` collection of one gnomon MongoDB database."""

    def __init__(self, repo: MongoRepository, refresh_s: float = 30.0):
        self.repo = repo
        self.db = repo.db
        self._start_watching(refresh_s)
        self.size = self._build()

    @property
    def collection(self):
        return self.db[VIEW]

    def _signature(self) -> tuple:
        latest = list(self.db["phases"].find({}, {"updated_at": 1}).sort("updated_at", DESCENDING).limit(1))
        newest = list(self.db["entries"].find({}, {"created_at": 1}).sort("created_at", DESCENDING).limit(1))
        return (self.db["entries"].count_documents({}), self.db["phases"].count_documents({}),
                str(latest[0].get("updated_at")) if latest else None,
                str(newest[0].get("created_at")) if newest else None)

    def _build(self) -> int:
        start = time.perf_counter()
        staging = self.db[f"{VIEW}_build_{uuid.uuid4().hex[:8]}"]
        n = 0
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            if not batch:
                return
            phases = {p["_id"]: p for p in self.db["phases"].find({"_id": {"$in": [d["_id"] for d in batch]}})}
            docs = []
            for entry in batch:
                try:
                    row = structure_row(entry, phases.get(entry["_id"]))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("entry %s is not served: %s", entry.get("id"), exc)
                    continue
                if row is not None:
                    docs.append({"_id": row["id"], **row})
            if docs:
                staging.insert_many(docs, ordered=False)
            batch.clear()

        for entry in self.db["entries"].find({"structure": {"$ne": None}}).sort("_id", ASCENDING):
            batch.append(entry)
            if len(batch) >= _BATCH:
                n += len(batch)
                flush()
        flush()
        n = staging.count_documents({})
        staging.create_index([("id", ASCENDING)], unique=True)
        staging.create_index([("elements", ASCENDING), ("e_above_hull", ASCENDING)])
        for field in _INDEXED:
            staging.create_index([(field, ASCENDING)])
        if n:
            staging.rename(VIEW, dropTarget=True)
        else:
            staging.drop()
            self.db[VIEW].drop()
        log.info("OPTIMADE view of %r: %d structures in %.1f s", self.repo, n, time.perf_counter() - start)
        return n

    def _rebuild(self) -> None:
        self.size = self._build()

    def close(self) -> None:
        self.repo.close()


class MongoStructureCollection(ReadOnlyCollection):
    """``/structures`` over a :class:`MongoView`."""

    def __init__(self, view: MongoView, config: ServerConfig):
        mapper = StructureMapper(config)
        super().__init__(StructureResource, mapper, GnomonMongoTransformer(mapper=mapper), config)
        self.view = view

    def __len__(self) -> int:
        return self.view.size

    def count(self, **kwargs: Any) -> int:
        return self.view.collection.count_documents(kwargs.get("filter") or {})

    def _run_db_query(self, criteria: dict[str, Any], single_entry: bool = False):
        self.view.maybe_refresh()
        query = criteria.get("filter") or {}
        limit = int(criteria.get("limit", self.config.page_limit))
        skip = int(criteria.get("skip", 0) or 0)
        cursor = self.view.collection.find(query, {"_id": False}).sort(
            [(f, ASCENDING if d > 0 else DESCENDING) for f, d in self.order(criteria)]
        ).skip(skip)
        if limit:
            cursor = cursor.limit(limit)
        results = [self.public(doc) for doc in cursor] if limit else []
        if single_entry:
            return results, len(results), False
        total = self.view.collection.count_documents(query)
        return results, total, skip + len(results) < total
