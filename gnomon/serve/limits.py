"""The request-size bound of ``gnomon serve``, enforced before anything parses a request.

The numbers (page, filter and request limits) are in :mod:`gnomon.storage.optimade.limits`,
where the views that check filters can reach them too.
"""

from __future__ import annotations

import orjson
from optimade import __api_version__
from starlette.types import ASGIApp, Receive, Scope, Send

from gnomon.storage.optimade.limits import MAX_REQUEST_BYTES


class RequestSizeLimit:
    """ASGI middleware: 413 for a body over the limit, 414 for a URL over it, as OPTIMADE
    error documents (the API is read-only; no endpoint needs a body)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_REQUEST_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        url_bytes = len(scope.get("path", "")) + len(scope.get("query_string", b""))
        if url_bytes > self.max_bytes:
            await _error(send, 414, "URI Too Long",
                         f"the request URL is {url_bytes} bytes; at most {self.max_bytes} "
                         "are accepted")
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _error(send, 413, "Payload Too Large",
                         f"the request body is {int(length)} bytes; at most {self.max_bytes} "
                         "are accepted")
            return
        await self.app(scope, receive, send)


async def _error(send: Send, status: int, title: str, detail: str) -> None:
    body = orjson.dumps({
        "errors": [{"status": str(status), "title": title, "detail": detail}],
        "meta": {"api_version": __api_version__, "more_data_available": False,
                 "query": {"representation": ""},
                 "provider": {"name": "gnomon", "description": "gnomon", "prefix": "gnomon"}},
    })
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/vnd.api+json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
