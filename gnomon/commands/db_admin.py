"""`gnomon db backup | restore | check`: keep a copy of a live database, put one back, and
find what is wrong in one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from gnomon.commands.common import DbOption, console, err_console, fail, repository, settings
from gnomon.commands.help_format import Command
from gnomon.credentials import mask_url
from gnomon.pipeline.thermo.hull_audit import TOLERANCE, hull_problems
from gnomon.storage import StorageError
from gnomon.storage.backup import Copied, backup, restore
from gnomon.storage.integrity import file_problems, record_problems


def _copied(verb: str, copied: Copied) -> None:
    counts = ", ".join(f"{n} {name}" for name, n in copied.counts.items() if n) or "no records"
    console.print(f"{verb} {escape(copied.source)} -> {escape(copied.target)}: "
                  f"{copied.records} records ({counts})", highlight=False)


def backup_command(
    dest: Annotated[Path, typer.Argument(help="New backup file (SQLite) or directory "
                                              "(MongoDB, mongodump layout).")],
    db: DbOption = None,
) -> None:
    """Copy the database consistently, also while campaigns write to it (SQLite's online
    backup API; MongoDB: every collection with its indexes, under gnomon's write lock)."""
    url = settings(db).db_url
    try:
        copied = backup(url, dest)
    except StorageError as exc:
        fail(f"backup failed: {exc}")
    _copied("backed up", copied)


def restore_command(
    src: Annotated[Path, typer.Argument(help="A file or directory `gnomon db backup` wrote.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite a database that holds "
                                                        "records.")] = False,
    db: DbOption = None,
) -> None:
    """Put a backup back; a database that holds records is replaced only with --force."""
    url = settings(db).db_url
    with repository(db) as repo:
        try:
            copied = restore(src, url, repo, force=force)
        except StorageError as exc:
            fail(f"restore refused: {exc}")
    _copied("restored", copied)


def check_command(
    tolerance: Annotated[float, typer.Option(help="eV/atom a stored e_above_hull may differ "
                                                  "from a fresh hull's.", min=0)] = TOLERANCE,
    db: DbOption = None,
) -> None:
    """Check the database: the file (SQLite's integrity check), every document against its
    record type, every reference between records, every e_above_hull against a fresh hull.
    Exits 1 and prints one line per problem if any is found."""
    url = settings(db).db_url
    problems = list(file_problems(url))
    if problems:  # a corrupt file: reading records from it would only add noise
        _report(url, problems)
    with repository(db, read_only=True) as repo:
        problems.extend(record_problems(repo))
        problems.extend(hull_problems(repo, tolerance))
        counts = repo.stats()
    if problems:
        _report(url, problems)
    console.print(f"{mask_url(url)}: ok ({sum(counts.values())} records checked)",
                  highlight=False)


def _report(url: str, problems: list[str]) -> None:
    for line in problems:
        err_console.print(f"[red]problem:[/] {escape(line)}", highlight=False)
    fail(f"{len(problems)} problem(s) in {mask_url(url)}")


def register(app: typer.Typer) -> None:
    """Add these commands to the `gnomon db` group."""
    app.command(
        "backup", cls=Command, epilog="Example: gnomon db backup /backups/gnomon-2024-06-01.db"
    )(backup_command)
    app.command(
        "restore", cls=Command, epilog="Example: gnomon db restore /backups/gnomon-2024-06-01.db"
    )(restore_command)
    app.command("check", cls=Command, epilog="Example: gnomon db check --tolerance 0.001")(
        check_command
    )
