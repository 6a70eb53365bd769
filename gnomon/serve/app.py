"""The ``gnomon serve`` application: OPTIMADE v1.2 over one gnomon database, plus the explorer.

The OPTIMADE side is ``optimade``'s own server (its routers, query-parameter checks, error
documents, middleware and response models), configured for gnomon: provider prefix
``gnomon``, gnomon's provider fields described in ``/info/structures``, a page limit, and a
``/structures`` collection that reads gnomon's database through the view of the URL's backend
(found in the registry, :mod:`gnomon.storage.backends`; each backend keeps its view beside its
repository). Links and references are empty collections in memory. Nothing writes to the
database.

Around it: error documents without Python in them (:mod:`.errors`), bounds on each request
(:mod:`.limits`, and a time limit on its queries), security headers on every answer and an
optional bearer token (:mod:`.security`), and the answers of repeated ``/structures`` queries
kept per view (:mod:`.page_cache`).
"""

from __future__ import annotations

import gc
import logging
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from optimade.server.config import ServerConfig
from optimade.server.create_app import create_app as optimade_app
from optimade.server.query_params import EntryListingQueryParams
from optimade.server.routers.utils import BASE_URL_PREFIXES, get_entries
from pydantic import BaseModel

from gnomon import __version__
from gnomon.serve.errors import MiddlewareErrors, error_document, install_error_handlers
from gnomon.serve.explorer import mount_explorer
from gnomon.serve.limits import RequestSizeLimit
from gnomon.serve.page_cache import MAX_ENTRIES, PageCache
from gnomon.serve.quiet import quiet_optimade_logger
from gnomon.serve.security import BearerToken, SecurityHeaders
from gnomon.storage.backends import backend_for
from gnomon.storage.optimade.limits import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, QUERY_TIME_LIMIT_S
from gnomon.storage.optimade.resources import PROVIDER_FIELDS, PROVIDER_PREFIX

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


def _structures_page(
    request: Request, params: Annotated[EntryListingQueryParams, Depends()]
) -> Response:
    """``/structures``: optimade's own handler (``get_entries``: parameter checks, paging links,
    meta, response fields), answered as bytes by orjson. optimade's route re-validates every
    page through the pydantic response models and encodes it with the standard library, which
    took most of a request's time; the documents served are validated by the tests instead."""
    body = get_entries(collection=request.app.state.entry_collections["structures"],
                       request=request, params=params)
    # timestamps as RFC 3339 with "Z": a "+00:00" pasted back into a filter URL unencoded
    # arrives as " 00:00" (optimade's validator does exactly that)
    option = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
    return Response(orjson.dumps(body, default=_dump_model, option=option),
                    media_type="application/vnd.api+json")


def _dump_model(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True, by_alias=True)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _serve_structures_lean(app: FastAPI) -> None:
    """Answer ``/structures`` with :func:`_structures_page` under every version prefix optimade
    serves; the routes go first, so they take the path from optimade's own."""
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
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', 'invalid')}"
        for e in exc.errors()
    )
    return error_document(request, 400, problems or "invalid query parameters")


def freeze_startup_heap() -> None:
    """Keep what a started server holds for its whole life (its modules and the app: some
    300,000 objects) out of the garbage collector's sight (:func:`gc.freeze`). Python runs a
    full collection every so often after many allocations, and the request that sets one off
    waits for it: a walk of every tracked object, 0.2-0.4 s on a 2-CPU machine (a cold system
    page of bench/serve.py waited 250-430 ms for its first byte), which then walks only what
    was made since (some 50,000 objects after a few pages): every cold system page answers in
    40-60 ms. For the programs that serve (``gnomon serve`` and each of its workers), not for
    :func:`create_app`: tests make many apps in one process, and frozen objects are never
    collected."""
    gc.collect()
    gc.freeze()


def create_app(db_url: str, *, base_url: str | None = None, refresh_s: float = 30.0,
               explorer: bool = True, token: str | None = None,
               query_time_s: float = QUERY_TIME_LIMIT_S,
               kept_pages: int = MAX_ENTRIES) -> FastAPI:
    """The FastAPI app serving ``db_url``'s structures as OPTIMADE (and the explorer at ``/``).

    ``base_url`` is the public URL clients reach it by (links in responses use it; default:
    the URL of each request). ``refresh_s``: how often the view checks the database for new
    data (see the view modules). ``token``: if given, every request must carry it as a bearer
    token. ``query_time_s``: how long one request's queries may run (then 503).
    ``kept_pages``: answers of repeated ``/structures`` queries kept (0: none). Raises
    StorageError for a database that cannot be served.
    """
    quiet_optimade_logger()
    view = backend_for(db_url).open_view(db_url, refresh_s)
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
    app.state.entry_collections["structures"] = view.collection(config, query_time_s)
    app.state.gnomon_view = view
    _serve_structures_lean(app)
    install_error_handlers(app)
    app.add_exception_handler(RequestValidationError, _bad_query_parameter)
    app.add_middleware(MiddlewareErrors)  # around optimade's middleware
    # outside optimade's middleware, whose work a kept answer saves; inside the token check
    app.add_middleware(PageCache, view=view, max_entries=kept_pages)
    app.add_middleware(RequestSizeLimit)
    if token is not None:
        app.add_middleware(BearerToken, token=token)
    app.add_middleware(SecurityHeaders)  # added last: outermost, on every answer
    if explorer:
        mount_explorer(app, db_url)
    return app
