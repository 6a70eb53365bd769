"""A read-only web explorer for a gnomon database: campaigns, chemical systems and phases.

`gnomon serve` calls :func:`mount_explorer` on its FastAPI app, so the OPTIMADE API and the
human pages share one process and one database URL. Pages:

- ``/``: campaigns with their per-round metrics (table and charts) and the chemical systems;
- ``/systems/{chemsys}``: the hull diagram and the stable and near-stable phases of one
  energy scheme (``?scheme=``; hulls never mix schemes), sortable and filterable by
  e_above_hull in the page;
- ``/phases/{id}``: a phase's numbers and relaxed structure, with CIF, POSCAR and JSON
  downloads (``/phases/{id}/download/{cif|poscar|json}``).

Everything the pages need (script, stylesheet, figures) is served by the explorer itself.
"""

from __future__ import annotations

import fastapi

from gnomon.serve.explorer.routes import make_router


def mount_explorer(app: fastapi.FastAPI, db_url: str) -> None:
    """Add the explorer's routes to ``app``; the database is opened at the first request.

    The explorer's routes go first, so they answer their paths even where the app already
    had a route there (optimade's own landing page at ``/``): the explorer is gnomon's ``/``.
    """
    before = list(app.router.routes)
    app.include_router(make_router(db_url))
    added = [r for r in app.router.routes if not any(r is b for b in before)]
    app.router.routes[:] = added + before


__all__ = ["mount_explorer"]
