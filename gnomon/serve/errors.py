"""Error documents that say what went wrong in words, never in Python.

optimade's exception handlers title an error with its exception class (``NotImplementedError``,
``HTTPException``, ``ValidationError``) and answer anything unexpected with the exception's
own text (``OverflowError: Python int too large to convert to SQLite INTEGER`` reached a client
that way). gnomon's handlers keep optimade's error documents but title them with the HTTP
reason phrase, and an unexpected exception is logged here with its traceback and answered with
a 500 that says only that the server failed.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import StarletteHTTPException
from lark.exceptions import VisitError
from optimade import __api_version__
from optimade.exceptions import BadRequest, OptimadeHTTPException
from optimade.models import OptimadeError
from optimade.server.exception_handlers import general_exception
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_document(request: Request, status: int, detail: str):
    """optimade's error response (its meta, its JSON:API media type) for ``status``."""
    error = OptimadeError(detail=detail, status=str(status), title=phrase(status))
    return general_exception(request, _Plain(detail), status_code=status, errors=[error])


class _Plain(Exception):
    """What :func:`general_exception` is handed: only its status and detail are read."""


def _http_error(request: Request, exc: StarletteHTTPException):
    return error_document(request, exc.status_code, str(exc.detail))


def _optimade_error(request: Request, exc: OptimadeHTTPException):
    return error_document(request, exc.status_code, str(exc.detail or phrase(exc.status_code)))


def _not_implemented(request: Request, exc: NotImplementedError):
    return error_document(request, 501, str(exc) or "this query is not supported")


def _filter_error(request: Request, exc: VisitError):
    """Lark wraps what a transformer raises: a 400 or 501 of the filter's own, else a bug."""
    orig = exc.orig_exc
    if isinstance(orig, BadRequest):
        return _optimade_error(request, orig)
    if isinstance(orig, NotImplementedError):
        return _not_implemented(request, orig)
    return _server_error(request, orig)


def _server_error(request: Request, exc: BaseException):
    if isinstance(exc, OptimadeHTTPException):
        return _optimade_error(request, exc)
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_document(request, 500, "the server failed to answer this request; the "
                                         "failure is in its log")


def install_error_handlers(app: FastAPI) -> None:
    """Replace optimade's handlers on ``app`` (RequestValidationError keeps gnomon's own)."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OptimadeHTTPException, _optimade_error)
    app.add_exception_handler(VisitError, _filter_error)
    app.add_exception_handler(NotImplementedError, _not_implemented)
    app.add_exception_handler(ValidationError, _server_error)
    app.add_exception_handler(Exception, _server_error)


class MiddlewareErrors:
    """ASGI middleware around optimade's own middleware, which refuses some requests by
    raising (a ``/v2`` URL: 553): answered here as error documents. Raised that far out, they
    would reach Starlette's outermost handler, which logs a traceback for each."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except (OptimadeHTTPException, StarletteHTTPException) as exc:
            if started:
                raise
            handler = _optimade_error if isinstance(exc, OptimadeHTTPException) else _http_error
            await handler(Request(scope), exc)(scope, receive, send)


async def send_error(send: Send, status: int, detail: str,
                     headers: list[tuple[bytes, bytes]] = ()) -> None:
    """An OPTIMADE error document sent from ASGI middleware, before the app (and its request
    objects) is reached."""
    body = orjson.dumps({
        "errors": [{"status": str(status), "title": phrase(status), "detail": detail}],
        "meta": {"api_version": __api_version__, "more_data_available": False,
                 "query": {"representation": ""},
                 "provider": {"name": "gnomon", "description": "gnomon", "prefix": "gnomon"}},
    })
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/vnd.api+json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
