"""The request-size bound of ``gnomon serve``, enforced before anything parses a request.

The numbers (page, filter and request limits) are in :mod:`gnomon.storage.optimade.limits`,
where the views that check filters can reach them too.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gnomon.serve.errors import send_error
from gnomon.storage.optimade.limits import MAX_REQUEST_BYTES


class RequestSizeLimit:
    """ASGI middleware: 413 for a body over the limit, 414 for a URL over it, 431 for headers
    over it, as OPTIMADE error documents (the API is read-only; no endpoint needs a body)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_REQUEST_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        url_bytes = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(
            scope.get("query_string", b""))
        if url_bytes > self.max_bytes:
            await send_error(send, 414, f"the request URL is {url_bytes} bytes; at most "
                                        f"{self.max_bytes} are accepted")
            return
        headers = scope.get("headers") or []
        header_bytes = sum(len(k) + len(v) for k, v in headers)
        if header_bytes > self.max_bytes:
            await send_error(send, 431, f"the request headers are {header_bytes} bytes; at most "
                                        f"{self.max_bytes} are accepted")
            return
        length = dict(headers).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await send_error(send, 413, f"the request body is {int(length)} bytes; at most "
                                        f"{self.max_bytes} are accepted")
            return
        await self.app(scope, receive, send)
