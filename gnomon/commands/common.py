"""What every command shares: the ``--db`` option, settings, the console, clean failures.

Nothing a command prints or logs shows a database password: ``fail`` and the log handlers
mask credentials (gnomon.credentials), whatever text reached them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from gnomon.config import ConfigError, Settings, load_settings
from gnomon.credentials import MaskSecretsFilter, mask_secrets
from gnomon.flows.database import DatabaseNotFound, database_url
from gnomon.storage import Repository, StorageError, open_repository

# Piped output (CI logs, `| tee`) gets a wide console instead of rich's 80 columns, so
# metric tables are not truncated into ellipses.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (sqlite:///path, mongodb://host/db); default GNOMON_DB "
        "or a SQLite file in GNOMON_HOME.",
        envvar="GNOMON_DB",
        show_envvar=False,
    ),
]


def settings(db: str | None = None) -> Settings:
    """The workspace settings, ``db`` (``--db``) on top; with no database named anywhere and
    ``GNOMON_DB_SECRET_BLOCK`` set, the URL is read from that Prefect Secret block."""
    try:
        s = load_settings(db=db)
        if s.db is None and os.environ.get("GNOMON_DB_SECRET_BLOCK"):
            try:
                s = load_settings(
                    db=database_url({"prefect_secret": os.environ["GNOMON_DB_SECRET_BLOCK"]})
                )
            except DatabaseNotFound as exc:
                fail(str(exc))
    except ConfigError as exc:
        fail(f"configuration error: {exc}")
    logging.basicConfig(level=s.log_level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskSecretsFilter) for f in handler.filters):
            handler.addFilter(MaskSecretsFilter())
    for noisy in ("httpx", "httpcore", "urllib3", "numexpr", "distributed", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return s


@contextmanager
def repository(db: str | None = None) -> Iterator[Repository]:
    s = settings(db)
    try:
        repo = open_repository(s.db_url)
    except StorageError as exc:
        fail(str(exc))
    try:
        yield repo
    finally:
        repo.close()


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {escape(mask_secrets(message))}", highlight=False)
    raise typer.Exit(code)
