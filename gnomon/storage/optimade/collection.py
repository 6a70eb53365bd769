"""What gnomon's two OPTIMADE structure collections share.

``optimade``'s server routers call an :class:`~optimade.server.entry_collections.EntryCollection`
for ``/structures``: it parses the query parameters (filter, page_limit, page_offset,
page_number, sort, response_fields) and asks the backend for one page and the count. gnomon's
collections are read-only views (:mod:`gnomon.storage.sqlite.view`,
:mod:`gnomon.storage.mongodb.view`); this base adds what both need: no writes, sorting only on
scalar fields (a list has no order a client could rely on), a deterministic order (ties and
unsorted queries go by id, so pages never overlap), bounds on the filter and the page offset
(:mod:`.limits`), and a time limit on each request's database work (:class:`QueryTimeLimit`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from lark import Transformer
from optimade.exceptions import BadRequest, OptimadeHTTPException
from optimade.models import EntryResource
from optimade.server.config import ServerConfig
from optimade.server.entry_collections import EntryCollection
from optimade.server.mappers import BaseResourceMapper
from optimade.server.query_params import EntryListingQueryParams, SingleEntryQueryParams

from gnomon.storage.optimade.filter_parser import FastFilterParser
from gnomon.storage.optimade.limits import (
    MAX_FILTER_CHARS,
    MAX_PAGE_OFFSET,
    QUERY_TIME_LIMIT_S,
)
from gnomon.storage.optimade.predicate import Compare
from gnomon.storage.optimade.resources import INTERNAL_FIELDS, SCALAR_FIELDS


class QueryTimeLimit(OptimadeHTTPException):
    """A request's database work ran past the server's time limit and was stopped.

    503, not 400: the same query may finish on a less busy server or a smaller database; the
    detail says what to change (a narrower filter, a smaller page)."""

    status_code = 503
    title = "Service Unavailable"


class ReadOnlyCollection(EntryCollection):
    """An EntryCollection over a view gnomon builds; subclasses run the query.

    ``time_limit_s``: how long one request's queries may run (:meth:`deadline` is when the
    current request's must stop; each backend enforces it its own way)."""

    def __init__(self, resource_cls: type[EntryResource], resource_mapper: BaseResourceMapper,
                 transformer: Transformer, config: ServerConfig,
                 time_limit_s: float = QUERY_TIME_LIMIT_S):
        super().__init__(resource_cls, resource_mapper, transformer, config)
        self.parser.parse = FastFilterParser(self.parser).parse
        self.time_limit_s = time_limit_s

    def deadline(self) -> float:
        """The ``time.monotonic()`` by which a request starting now must have its answer."""
        return time.monotonic() + self.time_limit_s

    def find(self, params: EntryListingQueryParams | SingleEntryQueryParams):
        with self.time_limited(self.deadline()):
            return super().find(params)

    @contextmanager
    def time_limited(self, deadline: float) -> Iterator[None]:
        """Within the block, stop the backend's queries at ``deadline`` and raise
        :meth:`over_time` (each backend overrides this its own way)."""
        yield

    def over_time(self) -> QueryTimeLimit:
        return QueryTimeLimit(detail=f"the query ran longer than this server's limit of "
                                     f"{self.time_limit_s:g} s and was stopped: narrow the "
                                     "filter or ask for a smaller page")

    def insert(self, data: list[EntryResource | dict]) -> None:
        raise NotImplementedError("gnomon serve is read-only: entries are added with gnomon itself")

    def handle_query_params(
        self, params: EntryListingQueryParams | SingleEntryQueryParams
    ) -> dict[str, Any]:
        if isinstance(params, SingleEntryQueryParams):
            return self._single_entry(params)
        text = getattr(params, "filter", "") or ""
        if len(text) > MAX_FILTER_CHARS:
            raise BadRequest(detail=f"the filter is {len(text)} characters long; at most "
                                    f"{MAX_FILTER_CHARS} are accepted")
        if getattr(params, "page_above", None) is not None or getattr(params, "page_below", None):
            raise NotImplementedError(
                "page_above/page_below paging is not supported: use page_offset"
            )
        criteria = super().handle_query_params(params)
        if criteria.get("skip", 0) < 0:
            raise BadRequest(detail="page_offset must not be negative")
        if criteria.get("skip", 0) > MAX_PAGE_OFFSET:
            raise BadRequest(detail=f"the page starts at structure {criteria['skip']}; at most "
                                    f"{MAX_PAGE_OFFSET} is accepted (page_offset, or "
                                    "page_number times page_limit)")
        if criteria.get("limit", 1) < 0:
            raise BadRequest(detail="page_limit must not be negative")
        return criteria

    def _single_entry(self, params: SingleEntryQueryParams) -> dict[str, Any]:
        """``/structures/{id}``: optimade writes the path's id into a filter, ``id="<id>"``,
        where a quote in the id would end the string and the rest be read as filter (an id
        ``x" OR nsites>0 OR id="y`` matched many structures). The id is taken whole instead,
        as a value."""
        text = params.filter  # type: ignore[attr-defined]
        entry_id = text[len('id="'):-1]
        params.filter = ""  # type: ignore[attr-defined]
        try:
            criteria = super().handle_query_params(params)
        finally:
            params.filter = text  # type: ignore[attr-defined]
        criteria["filter"] = self.transformer.compile(Compare("id", "=", entry_id))
        return criteria

    def parse_sort_params(self, sort_params: str) -> Iterable[tuple[str, int]]:
        spec = list(super().parse_sort_params(sort_params))
        for field, _ in spec:
            if field not in SCALAR_FIELDS:
                name = self.resource_mapper.get_optimade_field(field)
                raise BadRequest(detail=f"cannot sort on {name}: "
                                        "only fields with one value per structure are sortable")
        return spec

    @staticmethod
    def order(criteria: dict[str, Any]) -> list[tuple[str, int]]:
        """The sort of a query: the client's, then id (unique) so that the order is total."""
        spec = [(f, d) for f, d in criteria.get("sort") or [] if f != "id"]
        ids = [(f, d) for f, d in criteria.get("sort") or [] if f == "id"]
        return spec + (ids or [("id", 1)])

    @staticmethod
    def public(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k not in INTERNAL_FIELDS}
