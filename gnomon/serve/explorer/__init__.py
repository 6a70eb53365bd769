"""A read-only web explorer for a gnomon database: campaigns, chemical systems and phases.

`gnomon serve` calls :func:`mount_explorer` on its FastAPI app, so the OPTIMADE API and the
human pages share one process and one database URL. Pages:

- ``/``: campaigns with their per-round metrics (table and charts) and the chemical systems;
  ``/campaigns/{name}``: what each round found; ``/campaigns/compare?a=&b=``: two campaigns'
  hit rates and stable phases per oracle call;
- ``/systems/{chemsys}``: the interactive hull and the stable and near-stable phases of one
  energy scheme (``?scheme=``; hulls never mix schemes), sortable and filterable in the page,
  downloadable as a zip of CIFs and energies;
- ``/phases/{id}``: a phase's numbers, novelty and lineage, its structure in 3D, its XRD
  pattern, and CIF, POSCAR and JSON downloads;
- ``/search``: phases by formula, elements, energy, campaign, scheme and novelty, through the
  OPTIMADE filter it shows.

Everything the pages need (scripts, plotly.js, stylesheet, figures) is served by the explorer
itself: plotly.js as the smallest official partial bundle that draws a page's figures
(installed by ``make install`` from npm), or the full one the plotly wheel ships where those
are missing (:mod:`.static_files`).
"""

from __future__ import annotations

import fastapi
from optimade.server.middleware import AddWarnings
from starlette.middleware import Middleware

from gnomon.serve.explorer.routes import make_router

#: where the explorer's pages and files live (everything else is the OPTIMADE API)
PREFIXES = ("/campaigns", "/systems", "/phases", "/search", "/explorer/")


def is_explorer_path(path: str) -> bool:
    return path == "/" or path.startswith(PREFIXES)


class ApiWarnings(AddWarnings):
    """optimade's middleware that adds warnings to API documents, for the API's answers only.

    optimade's own reads every answer's body as UTF-8 text to put warnings in it, which breaks
    a binary answer (the explorer's zip downloads) and copies every page it passes on."""

    async def dispatch(self, request, call_next):
        path = request.url.path.removeprefix(request.scope.get("root_path", "").rstrip("/"))
        if is_explorer_path(path):
            return await call_next(request)
        return await super().dispatch(request, call_next)


def mount_explorer(app: fastapi.FastAPI, db_url: str) -> None:
    """Add the explorer's routes to ``app``; the database is opened at the first request.

    The explorer's routes go first, so they answer their paths even where the app already
    had a route there (optimade's own landing page at ``/``): the explorer is gnomon's ``/``.
    optimade's warnings middleware, where the app has it, is kept to the API's paths.
    """
    before = list(app.router.routes)
    app.include_router(make_router(db_url))
    added = [r for r in app.router.routes if not any(r is b for b in before)]
    app.router.routes[:] = added + before
    app.user_middleware[:] = [Middleware(ApiWarnings) if m.cls is AddWarnings else m
                              for m in app.user_middleware]


__all__ = ["mount_explorer"]
