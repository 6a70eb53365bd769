"""`gnomon db`: import computed entries, show what the database holds, rebuild hulls."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gnomon.commands.common import DbOption, console, err_console, fail, repository
from gnomon.credentials import mask_url
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.pipeline.thermo.importing import ImportFormatError, read_files
from gnomon.pipeline.thermo.schemes import IMPORTED, SchemeError, check_scheme
from gnomon.storage import StorageError

app = typer.Typer(no_args_is_help=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    )


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="JSON (pymatgen entries), extxyz, CIF files; "
                                                  "CSV files are energy tables for the CIFs.")],
    scheme: Annotated[str, typer.Option(help="Energy scheme of these energies (records may name "
                                        "their own in data.scheme).")] = IMPORTED,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Store the valid records "
                                               "and list each rejected one.")] = False,
    db: DbOption = None,
) -> None:
    """Import computed entries; the hulls they touch are updated in the same transaction."""
    try:
        scheme = check_scheme(scheme)
    except SchemeError as exc:
        fail(str(exc))
    try:
        result = read_files(list(files), scheme)
    except (ImportFormatError, SchemeError) as exc:
        fail(f"{exc}\nnothing was imported")
    if result.rejected:
        for r in result.rejected:
            err_console.print(f"[yellow]rejected[/] {escape(str(r))}", highlight=False)
        if not skip_invalid:
            fail(f"{len(result.rejected)} of {result.records} records are invalid; nothing was "
                 "imported (use --skip-invalid to import the valid ones)")
    if not result.entries:
        fail("no valid records to import")
    with repository(db) as repo:
        engine = HullEngine(repo)
        with _progress() as progress:
            task = progress.add_task("updating hulls", total=None)
            try:
                report = engine.ingest(
                    result.entries, progress=lambda i, n: progress.update(task, completed=i, total=n)
                )
            except StorageError as exc:
                fail(f"{exc}\nnothing was imported")
    console.print(
        f"imported [bold]{len(report.new_entry_ids)}[/] new entries "
        f"({len(report.known_entry_ids)} already stored, {len(result.rejected)} rejected); "
        f"recomputed {sum(len(v) for v in report.recomputed.values())} chemical systems; "
        f"{len(report.stable_at_ingest)} new entries below the previous hull"
    )


@app.command("stats")
def stats(db: DbOption = None) -> None:
    """Counts of every record type, and entries and stable phases per scheme."""
    with repository(db) as repo:
        counts = repo.stats()
        table = Table(title=f"gnomon database {escape(mask_url(repo.url))}")
        table.add_column("records")
        table.add_column("count", justify="right")
        for name, n in counts.items():
            table.add_row(name, str(n))
        console.print(table)
        schemes = Table(title="energy schemes")
        for col in ("scheme", "entries", "chemical systems", "stable phases"):
            schemes.add_column(col, justify="right" if col != "scheme" else "left")
        for s in repo.schemes():
            schemes.add_row(
                s,
                str(repo.count("entries", {"scheme": s})),
                str(len(repo.distinct("entries", "chemsys", {"scheme": s}))),
                str(repo.count("phases", {"scheme": s, "is_stable": True})),
            )
        console.print(schemes)


@app.command("rebuild-hull")
def rebuild_hull(
    scheme: Annotated[str | None, typer.Option(help="Only this scheme.")] = None,
    db: DbOption = None,
) -> None:
    """Recompute every stored hull from the stored entries."""
    with repository(db) as repo:
        with _progress() as progress:
            task = progress.add_task("rebuilding hulls", total=None)
            report = HullEngine(repo).rebuild(
                scheme, progress=lambda i, n: progress.update(task, completed=i, total=n)
            )
    console.print(f"recomputed {sum(len(v) for v in report.recomputed.values())} chemical systems, "
                  f"{report.phases_written} phases")
