"""The ``gnomon serve`` application: OPTIMADE v1.2 over one gnomon database, plus the explorer.

The OPTIMADE side is ``optimade``'s own server (its routers, query-parameter checks, error
documents, middleware and response models), configured for gnomon: provider prefix
``gnomon``, gnomon's provider fields described in ``/info/structures``, a page limit, and a
``/structures`` collection that reads gnomon's database through a view
(:mod:`gnomon.serve.sqlite_query` or :mod:`gnomon.serve.mongo_query`, by the URL's backend).
Links and references are empty collections in memory. Nothing writes to the database.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from optimade.server.config import ServerConfig
from optimade.server.query_params import EntryListingQueryParams
from optimade.server.routers.utils import get_entries
from pydantic import BaseModel

from gnomon import __version__
from gnomon.credentials import mask_url
from gnomon.serve.limits import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, RequestSizeLimit
from gnomon.serve.resources import PROVIDER_FIELDS, PROVIDER_PREFIX
from gnomon.storage import StorageError

log = logging.getLogger(__name__)

PROVIDER = {
    "name": "gnomon",
    "description": "Phases found by a gnomon discovery campaign (GNoME-style active learning), "
                   "with their energies and places on the convex hull.",
    "prefix": PROVIDER_PREFIX,
    "homepage": None,
}


def server_config(base_url: str | None = None) -> ServerConfig:
    """optimade's server settings for gnomon (explicit values: no OPTIMADE_* variable or
    optimade config file changes what gnomon serves)."""
    return ServerConfig(
        insert_test_data=False,
        database_backend="mongomock",  # only the empty links/references collections live there
        mongo_database=f"gnomon-serve-{uuid.uuid4().hex[:8]}",
        provider=PROVIDER,
        provider_fields={"structures": [dict(f) for f in PROVIDER_FIELDS]},
        implementation={"name": "gnomon", "version": __version__},
        page_limit=DEFAULT_PAGE_LIMIT,
        page_limit_max=MAX_PAGE_LIMIT,
        base_url=base_url,
        validate_api_response=True,
        debug=False,
        log_level="warning",
    )


def _quiet_optimade_logger() -> None:
    """optimade's logger announces its settings file and backend at INFO on stdout (and writes
    files under /var/log/optimade unless it has a handler already); gnomon keeps only its
    warnings, through the standard logging tree."""
    logger = logging.getLogger("optimade")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    if not any(isinstance(f, _WarningsOnly) for f in logger.filters):
        logger.addFilter(_WarningsOnly())


class _WarningsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def _structures_page(request: Request, params: Annotated[EntryListingQueryParams, Depends()]) -> Response:
    """``/structures``: optimade's own handler (``get_entries``: parameter checks, paging links,
    meta, response fields), answered as bytes by orjson. optimade's route re-validates every
    page through the pydantic response models and encodes it with the standard library, which
    took most of a request's time; the documents served are validated by the tests instead."""
    body = get_entries(collection=request.app.state.entry_collections["structures"],
                       request=request, params=params)
    # timestamps as RFC 3339 with "Z": a "+00:00" pasted back into a filter URL unencoded
    # arrives as " 00:00" (optimade's validator does exactly that)
    return Response(orjson.dumps(body, default=_dump_model, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC),
                    media_type="application/vnd.api+json")


def _dump_model(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True, by_alias=True)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _serve_structures_lean(app: FastAPI) -> None:
    """Answer ``/structures`` with :func:`_structures_page` under every version prefix optimade
    serves; the routes go first, so they take the path from optimade's own."""
    from fastapi import APIRouter
    from optimade.server.routers.utils import BASE_URL_PREFIXES

    router = APIRouter()
    router.add_api_route("/structures", _structures_page, methods=["GET"], tags=["Structures"])
    before = list(app.router.routes)
    for prefix in ("", *dict.fromkeys(BASE_URL_PREFIXES.values())):
        app.include_router(router, prefix=prefix, include_in_schema=prefix == "")
    added = [r for r in app.router.routes if not any(r is b for b in before)]
    app.router.routes[:] = added + before


def _bad_query_parameter(request: Request, exc: RequestValidationError):
    """A query parameter of the wrong type or range is the client's error: 400 with an OPTIMADE
    error document naming the parameter (optimade's own handler answers 500)."""
    from optimade.exceptions import BadRequest
    from optimade.server.exception_handlers import general_exception

    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', 'invalid')}"
        for e in exc.errors()
    )
    return general_exception(request, BadRequest(detail=problems or "invalid query parameters"))


def _open_view(db_url: str, refresh_s: float):
    """The view and /structures collection of the database behind ``db_url``."""
    if db_url.startswith("sqlite:///"):
        from pathlib import Path

        from gnomon.serve.sqlite_query import SQLiteStructureCollection, SQLiteView

        path = Path(db_url[len("sqlite:///"):])
        if not path.exists():
            raise StorageError(f"no gnomon database at {path}")
        view = SQLiteView(path, refresh_s=refresh_s)
        return view, lambda config: SQLiteStructureCollection(view, config)
    if db_url.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
        from gnomon.serve.mongo_query import MongoStructureCollection, MongoView
        from gnomon.storage.mongodb import MongoRepository

        view = MongoView(MongoRepository(db_url), refresh_s=refresh_s)
        return view, lambda config: MongoStructureCollection(view, config)
    raise StorageError(f"unsupported database URL {mask_url(db_url)!r}: use sqlite:///path or mongodb://...")


def create_app(db_url: str, *, base_url: str | None = None, refresh_s: float = 30.0,
               explorer: bool = True) -> FastAPI:
    """The FastAPI app serving ``db_url``'s structures as OPTIMADE (and the explorer at ``/``).

    ``base_url`` is the public URL clients reach it by (links in responses use it; default:
    the URL of each request). ``refresh_s``: how often the view checks the database for new
    data (see the view modules). Raises StorageError for a database that cannot be served.
    """
    from optimade.server.create_app import create_app as optimade_app

    _quiet_optimade_logger()
    view, make_collection = _open_view(db_url, refresh_s)
    config = server_config(base_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            view.close()

    app = optimade_app(config)
    logging.getLogger("optimade").setLevel(logging.WARNING)
    app.router.lifespan_context = lifespan
    app.state.entry_collections["structures"] = make_collection(config)
    app.state.gnomon_view = view
    _serve_structures_lean(app)
    app.add_exception_handler(RequestValidationError, _bad_query_parameter)
    app.add_middleware(RequestSizeLimit)
    if explorer:
        from gnomon.serve.explorer import mount_explorer

        mount_explorer(app, db_url)
    return app
