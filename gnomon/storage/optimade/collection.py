"""What gnomon's two OPTIMADE structure collections share.

``optimade``'s server routers call an :class:`~optimade.server.entry_collections.EntryCollection`
for ``/structures``: it parses the query parameters (filter, page_limit, page_offset,
page_number, sort, response_fields) and asks the backend for one page and the count. gnomon's
collections are read-only views (:mod:`gnomon.storage.sqlite.view`,
:mod:`gnomon.storage.mongodb.view`); this base adds what both need: no writes, sorting only on
scalar fields (a list has no order a client could rely on), a deterministic order (ties and
unsorted queries go by id, so pages never overlap), and a bound on the filter's length.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lark import Transformer
from optimade.exceptions import BadRequest
from optimade.models import EntryResource
from optimade.server.config import ServerConfig
from optimade.server.entry_collections import EntryCollection
from optimade.server.mappers import BaseResourceMapper
from optimade.server.query_params import EntryListingQueryParams, SingleEntryQueryParams

from gnomon.storage.optimade.filter_parser import FastFilterParser
from gnomon.storage.optimade.limits import MAX_FILTER_CHARS
from gnomon.storage.optimade.resources import INTERNAL_FIELDS, SCALAR_FIELDS


class ReadOnlyCollection(EntryCollection):
    """An EntryCollection over a view gnomon builds; subclasses run the query."""

    def __init__(self, resource_cls: type[EntryResource], resource_mapper: BaseResourceMapper,
                 transformer: Transformer, config: ServerConfig):
        super().__init__(resource_cls, resource_mapper, transformer, config)
        self.parser.parse = FastFilterParser(self.parser).parse

    def insert(self, data: list[EntryResource | dict]) -> None:
        raise NotImplementedError("gnomon serve is read-only: entries are added with gnomon itself")

    def handle_query_params(
        self, params: EntryListingQueryParams | SingleEntryQueryParams
    ) -> dict[str, Any]:
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
        if criteria.get("limit", 1) < 0:
            raise BadRequest(detail="page_limit must not be negative")
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
