"""`gnomon db`: import computed entries, show what the database holds, rebuild hulls."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gnomon.commands.common import DbOption, console, err_console, fail, repository
from gnomon.credentials import mask_url
from gnomon.pipeline.generation.candidate_io import write_candidates
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.pipeline.thermo.importing import ImportFormatError, read_files
from gnomon.pipeline.thermo.optimade_import import DEFAULT_ENERGY_FIELD
from gnomon.pipeline.thermo.schemes import IMPORTED, SchemeError, check_scheme
from gnomon.storage import StorageError

app = typer.Typer(no_args_is_help=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


class EnergyPer(StrEnum):
    atom = "atom"
    cell = "cell"


ImportFilesOption = Annotated[
    list[str],
    typer.Argument(
        help="JSON (pymatgen entries), extxyz, CIF files; "
        "CSV files are energy tables for the CIFs; or one "
        "OPTIMADE base URL (https://...)."
    ),
]
ImportSchemeOption = Annotated[
    str,
    typer.Option(
        help="Energy scheme of these energies (records may name their own in data.scheme)."
    ),
]
ImportSkipInvalidOption = Annotated[
    bool,
    typer.Option("--skip-invalid", help="Store the valid records and list each rejected one."),
]
ImportFilterOption = Annotated[
    str | None,
    typer.Option(
        "--filter", help='OPTIMADE filter for a URL import, e.g. \'elements HAS ALL "Li","O"\'.'
    ),
]
ImportEnergyFieldOption = Annotated[
    str,
    typer.Option(help="Provider field holding the energy (eV, uncorrected) for a URL import."),
]
ImportEnergyPerOption = Annotated[
    EnergyPer, typer.Option(help="Whether --energy-field is per atom or per cell.")
]
ImportMaxRecordsOption = Annotated[
    int | None, typer.Option(help="Stop after this many structures (URL import).", min=1)
]
ImportTemplatesOutOption = Annotated[
    Path | None,
    typer.Option(
        help="Also write the structures without "
        "energies to this candidate file (.json), for "
        "`gnomon generate saps --templates`."
    ),
]


@app.command("import")
def import_(
    files: ImportFilesOption,
    scheme: ImportSchemeOption = IMPORTED,
    skip_invalid: ImportSkipInvalidOption = False,
    filter_: ImportFilterOption = None,
    energy_field: ImportEnergyFieldOption = DEFAULT_ENERGY_FIELD,
    energy_per: ImportEnergyPerOption = EnergyPer.atom,
    max_records: ImportMaxRecordsOption = None,
    templates_out: ImportTemplatesOutOption = None,
    db: DbOption = None,
) -> None:
    """Import computed entries from files or an OPTIMADE provider; the hulls they touch are
    updated in the same transaction."""
    try:
        scheme = check_scheme(scheme)
    except SchemeError as exc:
        fail(str(exc))
    urls = [f for f in files if f.startswith(("http://", "https://"))]
    if urls:
        if len(files) != 1:
            fail("give either files or one OPTIMADE base URL, not both")
        _import_from_provider(
            urls[0],
            filter_,
            scheme,
            energy_field,
            energy_per.value,
            max_records,
            templates_out,
            skip_invalid,
            db,
        )
        return
    if filter_ is not None:
        fail("--filter applies to an OPTIMADE URL import only")
    try:
        result = read_files([Path(f) for f in files], scheme)
    except (ImportFormatError, SchemeError) as exc:
        fail(f"{exc}\nnothing was imported")
    _store_entries(result, skip_invalid, db)


def _store_entries(result, skip_invalid: bool, db: str | None) -> None:
    if result.rejected:
        for r in result.rejected:
            err_console.print(f"[yellow]rejected[/] {escape(str(r))}", highlight=False)
        if not skip_invalid:
            fail(
                f"{len(result.rejected)} of {result.records} records are invalid; nothing was "
                "imported (use --skip-invalid to import the valid ones)"
            )
    if not result.entries:
        fail("no valid records to import")
    with repository(db) as repo:
        engine = HullEngine(repo)
        with _progress() as progress:
            task = progress.add_task("updating hulls", total=None)
            try:
                report = engine.ingest(
                    result.entries,
                    progress=lambda i, n: progress.update(task, completed=i, total=n),
                )
            except StorageError as exc:
                fail(f"{exc}\nnothing was imported")
    console.print(
        f"imported [bold]{len(report.new_entry_ids)}[/] new entries "
        f"({len(report.known_entry_ids)} already stored, {len(result.rejected)} rejected); "
        f"recomputed {sum(len(v) for v in report.recomputed.values())} chemical systems; "
        f"{len(report.stable_at_ingest)} new entries below the previous hull"
    )


def _import_from_provider(
    url: str,
    filter_: str | None,
    scheme: str,
    energy_field: str,
    energy_per: str,
    max_records: int | None,
    templates_out: Path | None,
    skip_invalid: bool,
    db: str | None,
) -> None:
    """Page through an OPTIMADE provider; entries with energies go through the hull like a file
    import, structures without become candidates (and, with --templates-out, a template file)."""
    # heavy: pymatgen.entries
    from gnomon.pipeline.thermo.optimade_import import OptimadeImportError, read_provider

    try:
        read = read_provider(
            url,
            filter_,
            scheme,
            energy_field=energy_field,
            energy_per=energy_per,
            max_records=max_records,
        )
    except OptimadeImportError as exc:
        fail(f"{exc}\nnothing was imported")
    result = read.entries
    if result.rejected and not skip_invalid:
        _store_entries(result, skip_invalid, db)  # lists the rejected records and stops
    if not result.entries and not read.candidates:
        fail(f"the provider returned no usable structures for filter {filter_!r}")
    if result.entries:
        err_console.print(
            f"{len(result.entries)} structures have energies in {energy_field}: "
            f"imported as entries of scheme {scheme}",
            highlight=False,
        )
        _store_entries(result, skip_invalid, db)
    if read.candidates:
        err_console.print(
            f"{len(read.candidates)} structures have no {energy_field}: stored as candidates "
            "(generator 'optimade') to relax, not as entries"
            + (
                f"; written to {templates_out} for `gnomon generate saps --templates`"
                if templates_out
                else ""
            ),
            highlight=False,
        )
        with repository(db) as repo:
            new = repo.add_candidates(read.candidates)
        if templates_out is not None:
            write_candidates(templates_out, read.candidates)
        console.print(
            f"stored [bold]{len(new)}[/] new candidates ({len(read.candidates) - len(new)} "
            "already stored)"
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
    console.print(
        f"recomputed {sum(len(v) for v in report.recomputed.values())} chemical systems, "
        f"{report.phases_written} phases"
    )
