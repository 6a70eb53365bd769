"""What every explorer handler shares: the repository opened on first use, the page renderer,
the addresses of system pages, and plain-text and JSON answers."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any
from urllib.parse import quote, urlencode

import plotly.io
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from starlette.routing import Match

from gnomon.pipeline.thermo.phase_query import normalise_chemsys
from gnomon.serve.explorer import views
from gnomon.serve.explorer.facts import NoveltyCache
from gnomon.serve.explorer.templates import make_environment
from gnomon.storage import Repository, open_repository
from gnomon.storage.chemsys import subsystems

_TEMPLATES = make_environment()


class LazyRepository:
    """The repository behind ``db_url``, opened at the first request and kept for the app's life.

    Opening late keeps ``mount_explorer`` cheap (no database is touched until a page is asked
    for); the SQLite backend gives each server thread its own connection.
    """

    def __init__(self, db_url: str):
        self.db_url = db_url
        self._repo: Repository | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Repository:
        if self._repo is None:
            with self._lock:
                if self._repo is None:
                    self._repo = open_repository(self.db_url)
        return self._repo


class LruCache:
    """The last ``size`` values computed, by key (figures as JSON, XRD patterns): a page and
    the figures it then fetches ask for the same thing within a second."""

    def __init__(self, size: int = 128):
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class Shared:
    """What the explorer's handlers share over one database: the repository (opened at the
    first request), the novelty verdicts, and the recently made figures and patterns."""

    def __init__(self, db_url: str):
        self.repo = LazyRepository(db_url)
        self.novelty = NoveltyCache()
        self.cache = LruCache()
        self.views = LruCache(16)  # system views hold their rows' structures: keep a few

    def system_view(self, chemsys: str, scheme: str | None, within: float,
                    every_row: bool = False) -> views.SystemView:
        """A system page's phases (:func:`views.system_view`; ``every_row``: all of the
        window, not only the first :data:`views.PAGE_ROWS`), remembered until the space holds
        a different number of entries of the scheme (entries are only ever added)."""
        repo = self.repo()
        chemsys = normalise_chemsys(chemsys)
        _, scheme = views.pick_scheme(repo, chemsys, scheme)
        count = repo.count("entries", {"scheme": scheme, "chemsys": subsystems(chemsys)})
        rows = views.MAX_ROWS if every_row else views.PAGE_ROWS
        return self.views.get_or_make(
            (chemsys, scheme, within, rows, count),
            lambda: views.system_view(repo, chemsys, scheme, within, rows))


def root_of(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def within_param(within: float) -> str | None:
    """The ``within`` query value of a window (None for the default one)."""
    if within == views.NEAR_STABLE:
        return None
    return "inf" if math.isinf(within) else repr(within)


def system_url(root: str) -> Callable[..., str]:
    def url(chemsys: str, scheme: str | None = None, within: float | None = None) -> str:
        params: dict[str, Any] = {}
        if scheme:
            params["scheme"] = scheme
        if within is not None and within_param(within) is not None:
            params["within"] = within_param(within)
        tail = f"?{urlencode(params)}" if params else ""
        return f"{root}/systems/{quote(chemsys, safe='')}{tail}"

    return url


def answers(request: Request, path: str) -> bool:
    """Whether the app serving this request has a route for ``GET path`` (the OPTIMADE API is
    linked from every page where the app serves one)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes)


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    root = root_of(request)
    optimade = answers(request, "/v1/info")
    html = _TEMPLATES.get_template(template).render(
        root=root, optimade=optimade, system_url=system_url(root), status=status, **context
    )
    return HTMLResponse(html, status_code=status)


def error(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return page(request, "error.html", status=status, title=title, message=message)


def text(message: str, status: int) -> Response:
    return Response(message, status_code=status, media_type="text/plain")


def json_text(body: str) -> Response:
    return Response(body, media_type="application/json")


def attachment(body: bytes | str, media_type: str, name: str) -> Response:
    return Response(body, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def figure_json(figure: dict[str, Any]) -> str:
    """A plotly figure as plotly.js reads it (numpy values encoded by plotly's own encoder)."""
    return plotly.io.to_json(figure, validate=False)
