"""Answers to repeated ``/structures`` queries, kept as the bytes sent.

A client paging through results, a page of the explorer, a dashboard polling: the same query
comes again while the view has not changed, and its answer is the same document. Answering it
costs the server ~5 ms of CPU in optimade's middleware, parameter handling and response
building, of which the database is a small part, so a repeated query is answered from the
bytes of its last answer instead, ahead of all of that. The answer is kept per view
generation (a new view never answers from an old one's pages), per everything in the request
that the answer depends on (path, query string, host and scheme, which the paging links are
made of, and ``Origin``, which the CORS headers are), for 200 answers without warnings only.
Only ``meta.time_stamp`` differs between the kept answer and a fresh one: it is renewed on each
answer, as the time the query was answered.

The bound is on entries and bytes, least recently used first out; each server process keeps
its own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from pydantic_core import to_jsonable_python
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gnomon.storage.optimade.view import StructureView

MAX_ENTRIES = 512
MAX_BYTES = 64 << 20
_STAMP_KEY = b'"time_stamp":"'
_CACHED_PATH_END = "/structures"


@dataclass(frozen=True)
class _Page:
    """A kept 200 answer."""

    headers: list[tuple[bytes, bytes]]
    """Without content-length, which is set for each answer."""
    head: bytes
    """The body up to the time stamp's value."""
    tail: bytes
    """The body after the time stamp's value."""


def _time_stamp() -> bytes:
    """``meta.time_stamp`` as the uncached answer writes it (pydantic's JSON of
    ``datetime.now()``, as optimade's ``meta_values`` makes it)."""
    return to_jsonable_python(datetime.now()).encode()


class PageCache:
    """ASGI middleware keeping the answers of ``GET .../structures`` per view generation."""

    def __init__(self, app: ASGIApp, view: StructureView, max_entries: int = MAX_ENTRIES,
                 max_bytes: int = MAX_BYTES):
        self.app = app
        self.view = view
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._pages: OrderedDict[tuple, _Page] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "GET"
                or not scope["path"].endswith(_CACHED_PATH_END) or self.max_entries <= 0):
            await self.app(scope, receive, send)
            return
        # a request served from kept pages must still drive the view's refresh checks
        self.view.maybe_refresh()
        generation = self.view.generation
        key = _key(scope, generation)
        page = self._get(key)
        if page is not None:
            await _replay(page, send)
            return
        sent: list[Message] = []

        async def keep(message: Message) -> None:
            sent.append(message)
            await send(message)

        await self.app(scope, receive, keep)
        if self.view.generation == generation:  # answered from the view of the key
            page = _page(sent)
            if page is not None:
                self._put(key, page)

    def _get(self, key: tuple) -> _Page | None:
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def _put(self, key: tuple, page: _Page) -> None:
        size = len(page.head) + len(page.tail)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._pages:
                return
            self._pages[key] = page
            self._bytes += size
            while len(self._pages) > self.max_entries or self._bytes > self.max_bytes:
                _, old = self._pages.popitem(last=False)
                self._bytes -= len(old.head) + len(old.tail)


def _key(scope: Scope, generation: int) -> tuple:
    headers = dict(scope.get("headers") or ())
    server = scope.get("server")
    return (generation, scope.get("scheme"), tuple(server) if server else None,
            scope.get("root_path", ""),
            scope["path"], scope.get("query_string", b""), headers.get(b"host"),
            headers.get(b"origin"))


def _page(sent: list[Message]) -> _Page | None:
    """The answer ``sent`` as a page to keep, or None if it is not to be kept (not a whole 200
    answer, one with warnings, or one without a time stamp)."""
    if not sent or sent[0]["type"] != "http.response.start" or sent[0]["status"] != 200:
        return None
    chunks = [m for m in sent[1:] if m["type"] == "http.response.body"]
    if not chunks or chunks[-1].get("more_body", False):
        return None
    body = b"".join(m.get("body", b"") for m in chunks)
    start = body.rfind(_STAMP_KEY)
    if start < 0 or b'"warnings":' in body:
        return None
    start += len(_STAMP_KEY)
    end = body.find(b'"', start)
    if end < 0:
        return None
    headers = [(k, v) for k, v in sent[0].get("headers", ()) if k.lower() != b"content-length"]
    return _Page(headers, body[:start], body[end:])


async def _replay(page: _Page, send: Send) -> None:
    body = page.head + _time_stamp() + page.tail
    headers = [*page.headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})

