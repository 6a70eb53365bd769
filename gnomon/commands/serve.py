"""`gnomon serve`: the phases found, as an OPTIMADE API (and the web explorer) over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gnomon.commands.common import DbOption, err_console, fail, settings
from gnomon.commands.help_format import Command
from gnomon.credentials import mask_url
from gnomon.storage import StorageError
from gnomon.storage.backends import backend_for
from gnomon.storage.optimade.limits import QUERY_TIME_LIMIT_S

commands = typer.Typer()


@commands.command(
    "serve",
    cls=Command,
    epilog="Example: gnomon serve --port 8000 --db sqlite:///runs/gnomon.db",
)
def serve(
    host: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS",
            help="Address to listen on; 127.0.0.1 keeps it on this "
            "machine (0.0.0.0 exposes it to the network)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="TCP port.", min=1, max=65535)] = 8000,
    base_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Public URL clients reach the server by, "
            "when behind a proxy (links in responses use it)."
        ),
    ] = None,
    refresh: Annotated[
        float,
        typer.Option(
            "--poll",
            metavar="SECONDS",
            help="Seconds between checks of the database for new "
            "phases (the served view is rebuilt on a change).",
            min=1,
        ),
    ] = 30.0,
    token_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="File holding a bearer token: every request must then send "
            "'Authorization: Bearer <token>' (for a database not meant to be public).",
        ),
    ] = None,
    query_time_limit: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Longest a request's queries may run; longer ones are stopped (503).",
            min=0.1,
        ),
    ] = QUERY_TIME_LIMIT_S,
    workers: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Server processes answering on the one port, each worth about one core's "
            "requests; 1 serves from this process.",
            min=1,
        ),
    ] = 1,
    db: DbOption = None,
) -> None:
    """Serve the phases as an OPTIMADE API and the web explorer.

    The database is served read-only: OPTIMADE v1.2 under /v1 (structures with _gnomon_
    fields), the explorer at /. Stop with Ctrl-C.
    """
    # heavy: matplotlib, uvicorn
    import matplotlib
    import uvicorn

    # heavy: fastapi
    from gnomon.serve.app import create_app, freeze_startup_heap
    from gnomon.serve.security import TokenFileError, is_loopback, read_token_file
    from gnomon.serve.workers import ServeSettings, run_workers

    # the server draws its figures off the main thread, with no display: the program chooses
    # its backend here, once; the library modules leave the choice to whoever imports them
    matplotlib.use("Agg")
    workspace = settings(db)
    url = workspace.db_url
    token = None
    if token_file is not None:
        try:
            token = read_token_file(token_file)
        except TokenFileError as exc:
            fail(str(exc))
    try:
        if workers == 1:
            app = create_app(url, base_url=base_url, refresh_s=refresh, token=token,
                             query_time_s=query_time_limit)
            size = app.state.gnomon_view.size
        else:
            # built here once, kept in the view store, taken by each worker as it starts
            size = _view_size(url, refresh)
    except (StorageError, FileNotFoundError) as exc:
        fail(f"cannot serve {mask_url(url)}: {exc}")
    if token is None and not is_loopback(host):
        err_console.print(f"warning: {host} is reachable from other machines and no "
                          "--token-file is set: anyone who reaches it can read this database",
                          highlight=False)
    shown = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    err_console.print(
        f"serving {mask_url(url)}: OPTIMADE at {shown}/v1 "
        f"({size} structures{f', {workers} workers' if workers > 1 else ''}), "
        f"explorer at {shown}/",
        highlight=False,
    )
    if workers == 1:
        freeze_startup_heap()
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    run_workers(
        ServeSettings(db_url=url, base_url=base_url, refresh_s=refresh,
                      token_file=str(token_file.resolve()) if token_file else None,
                      query_time_s=query_time_limit, log_level=workspace.log_level),
        host, port, workers,
    )


def _view_size(url: str, refresh_s: float) -> int:
    """Structures in the served view of ``url``, which this takes (or builds and keeps for the
    workers to take)."""
    view = backend_for(url).open_view(url, refresh_s)
    try:
        return view.size
    finally:
        view.close()
