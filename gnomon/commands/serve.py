"""`gnomon serve`: the phases found, as an OPTIMADE API (and the web explorer) over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gnomon.commands.common import DbOption, err_console, fail, settings
from gnomon.commands.help_format import Command
from gnomon.credentials import mask_url
from gnomon.storage import StorageError
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
    from gnomon.serve.app import create_app
    from gnomon.serve.security import TokenFileError, is_loopback, read_token_file

    # the server draws its figures off the main thread, with no display: the program chooses
    # its backend here, once; the library modules leave the choice to whoever imports them
    matplotlib.use("Agg")
    url = settings(db).db_url
    token = None
    if token_file is not None:
        try:
            token = read_token_file(token_file)
        except TokenFileError as exc:
            fail(str(exc))
    try:
        app = create_app(url, base_url=base_url, refresh_s=refresh, token=token,
                         query_time_s=query_time_limit)
    except (StorageError, FileNotFoundError) as exc:
        fail(f"cannot serve {mask_url(url)}: {exc}")
    if token is None and not is_loopback(host):
        err_console.print(f"warning: {host} is reachable from other machines and no "
                          "--token-file is set: anyone who reaches it can read this database",
                          highlight=False)
    shown = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    err_console.print(
        f"serving {mask_url(url)}: OPTIMADE at {shown}/v1 "
        f"({app.state.gnomon_view.size} structures), explorer at {shown}/",
        highlight=False,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
