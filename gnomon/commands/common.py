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
from gnomon.storage import DatabaseMissing, Repository, StorageError, open_repository

# Piped output (CI logs, `| tee`) gets a wide console instead of rich's 80 columns, so
# metric tables are not truncated into ellipses.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
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
def repository(
    db: str | None = None, *, read_only: bool = False, create: bool = True
) -> Iterator[Repository]:
    """The database, or one line saying why not (a malformed or unreachable URL, a missing
    file). ``read_only`` for a command that only reads: it creates no database, no table and
    no record, and a missing SQLite file is an error naming its path. ``create=False`` for a
    command that writes into what is there but has nothing to do in a new database."""
    s = settings(db)
    try:
        if not create and not read_only:
            open_repository(s.db_url, read_only=True).close()  # exists? (creates nothing)
        repo = open_repository(s.db_url, read_only=read_only)
    except DatabaseMissing as exc:
        fail(_nothing_to_read(str(exc)))
    except StorageError as exc:
        fail(str(exc))
    try:
        yield repo
    finally:
        repo.close()


def _nothing_to_read(missing: str) -> str:
    return f"{missing}: nothing to read (gnomon db import or gnomon campaign run create one)"


def require(repo: Repository | None, db: str | None) -> Repository:
    """``repo`` from :func:`existing_repository`, or the one-line error naming the database
    that does not exist."""
    if repo is None:
        fail(_nothing_to_read(f"no gnomon database at {settings(db).db_url}"))
    assert repo is not None
    return repo


@contextmanager
def existing_repository(db: str | None = None) -> Iterator[Repository | None]:
    """The database read-only if it exists, else None: for a command that creates one only
    once its input proved good, and must not leave an empty one behind on the way to an
    error."""
    s = settings(db)
    try:
        repo = open_repository(s.db_url, read_only=True)
    except DatabaseMissing:
        yield None
        return
    except StorageError as exc:
        fail(str(exc))
    try:
        yield repo
    finally:
        repo.close()


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {escape(mask_secrets(message))}", highlight=False)
    raise typer.Exit(code)
