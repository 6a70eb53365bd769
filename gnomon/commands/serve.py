"""`gnomon serve`: the phases found, as an OPTIMADE API (and the web explorer) over HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

from gnomon.commands.common import DbOption, err_console, fail, settings
from gnomon.credentials import mask_url
from gnomon.storage import StorageError


def serve(
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; 127.0.0.1 keeps it on this "
            "machine (0.0.0.0 exposes it to the network)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="Public URL clients reach the server by, "
            "when behind a proxy (links in responses use it)."
        ),
    ] = None,
    refresh: Annotated[
        float,
        typer.Option(
            help="Seconds between checks of the database for new "
            "phases (the served view is rebuilt on a change).",
            min=1,
        ),
    ] = 30.0,
    db: DbOption = None,
) -> None:
    """Serve the database read-only: OPTIMADE v1.2 under /v1 (structures with _gnomon_ fields),
    the explorer at /. Stop with Ctrl-C."""
    # heavy: matplotlib, uvicorn
    import matplotlib
    import uvicorn

    # heavy: fastapi
    from gnomon.serve.app import create_app

    # the server draws its figures off the main thread, with no display: the program chooses
    # its backend here, once; the library modules leave the choice to whoever imports them
    matplotlib.use("Agg")
    url = settings(db).db_url
    try:
        app = create_app(url, base_url=base_url, refresh_s=refresh)
    except (StorageError, FileNotFoundError) as exc:
        fail(f"cannot serve {mask_url(url)}: {exc}")
    shown = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    err_console.print(
        f"serving {mask_url(url)}: OPTIMADE at {shown}/v1 "
        f"({app.state.gnomon_view.size} structures), explorer at {shown}/",
        highlight=False,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
