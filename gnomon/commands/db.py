"""`gnomon db`: import computed entries, show what the database holds, rebuild hulls."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gnomon.commands.common import (
    DbOption,
    console,
    err_console,
    existing_repository,
    fail,
    repository,
)
from gnomon.commands.help_format import Command, Group
from gnomon.credentials import mask_url
from gnomon.pipeline.generation.candidate_io import write_candidates
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.pipeline.thermo.importing import ImportFormatError, read_files
from gnomon.pipeline.thermo.optimade_import import DEFAULT_ENERGY_FIELD
from gnomon.pipeline.thermo.schemes import (
    BUILTIN_SCHEMES,
    SchemeError,
    check_scheme,
    known_scheme,
    register_scheme,
    registered_schemes,
    unknown_scheme,
)
from gnomon.storage import StorageError

app = typer.Typer(
    cls=Group, no_args_is_help=True, help="Import entries and inspect the phase database."
)


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
        metavar="FILE...",
        help="JSON (pymatgen entries), extxyz, CIF files; "
        "CSV files are energy tables for the CIFs; or one "
        "OPTIMADE base URL (https://...)."
    ),
]
ImportSchemeOption = Annotated[
    str | None,
    typer.Option(
        help="Registered energy scheme of these energies (records may name their own in "
        "data.scheme); required unless --new-scheme.",
        show_default=False,
    ),
]
ImportNewSchemeOption = Annotated[
    str | None,
    typer.Option(
        "--new-scheme",
        metavar="NAME",
        help="Register a new energy scheme NAME for these energies (needs --description).",
        show_default=False,
    ),
]
ImportDescriptionOption = Annotated[
    str | None,
    typer.Option(
        help="With --new-scheme: what produced the energies (code, functional, settings, "
        "corrections); recorded with the scheme.",
        show_default=False,
    ),
]
ImportSkipInvalidOption = Annotated[
    bool,
    typer.Option("--skip-invalid", help="Store the valid records and list each rejected one."),
]
ImportFilterOption = Annotated[
    str | None,
    typer.Option(
        "--filter",
        metavar="FILTER",
        help='OPTIMADE filter for a URL import, e.g. \'elements HAS ALL "Li","O"\'.',
    ),
]
ImportEnergyFieldOption = Annotated[
    str,
    typer.Option(
        metavar="FIELD",
        help="Provider field holding the energy (eV, uncorrected) for a URL import.",
    ),
]
ImportEnergyPerOption = Annotated[
    EnergyPer, typer.Option(help="Whether --energy-field is per atom or per cell.")
]
ImportMaxRecordsOption = Annotated[
    int | None,
    typer.Option("--limit", help="Stop after this many structures (URL import).", min=1),
]
ImportTemplatesOutOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="Also write the structures without "
        "energies to this candidate file (.json), for "
        "`gnomon generate saps --templates`."
    ),
]


@app.command(
    "import",
    cls=Command,
    epilog="Example: gnomon db import entries.json --scheme vasp-pbe-mp2020",
)
def import_(
    files: ImportFilesOption,
    scheme: ImportSchemeOption = None,
    new_scheme: ImportNewSchemeOption = None,
    description: ImportDescriptionOption = None,
    skip_invalid: ImportSkipInvalidOption = False,
    filter_: ImportFilterOption = None,
    energy_field: ImportEnergyFieldOption = DEFAULT_ENERGY_FIELD,
    energy_per: ImportEnergyPerOption = EnergyPer.atom,
    max_records: ImportMaxRecordsOption = None,
    templates_out: ImportTemplatesOutOption = None,
    db: DbOption = None,
) -> None:
    """Import computed entries from files or an OPTIMADE provider.

    The hulls the entries touch are updated in the same transaction.
    """
    registered = _registered(db)
    scheme, new = _chosen_scheme(scheme, new_scheme, description, registered)
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
            new,
        )
        return
    if filter_ is not None:
        fail("--filter applies to an OPTIMADE URL import only")
    try:
        result = read_files([Path(f) for f in files], scheme)
    except (ImportFormatError, SchemeError) as exc:
        fail(f"{exc}\nnothing was imported")
    _check_record_schemes(result, {*registered, scheme})
    _store_entries(result, skip_invalid, db, new)


def _registered(db: str | None) -> dict[str, str]:
    """The schemes the database knows (read without creating it: a refused import must leave
    no empty database behind)."""
    with existing_repository(db) as repo:
        return dict(BUILTIN_SCHEMES) if repo is None else registered_schemes(repo)


def _chosen_scheme(
    scheme: str | None, new_scheme: str | None, description: str | None,
    registered: dict[str, str],
) -> tuple[str, tuple[str, str] | None]:
    """The scheme the energies are imported into, and ``(name, description)`` when it is new
    (registered with the entries, never on its own)."""
    if scheme is not None and new_scheme is not None:
        fail("give --scheme (a registered scheme) or --new-scheme (a new one), not both")
    if scheme is None and new_scheme is None:
        fail("which energy scheme are these energies in? pass --scheme NAME, one of "
             f"{', '.join(sorted(registered))}; or register a new one with --new-scheme NAME "
             "--description TEXT")
    try:
        if scheme is not None:
            if description is not None:
                fail("--description goes with --new-scheme; a registered scheme has one")
            return known_scheme(scheme, list(registered)), None
        name = check_scheme(new_scheme or "")
    except SchemeError as exc:
        fail(f"{exc}; nothing was imported")
    if name in registered:
        fail(f"energy scheme {name!r} is registered already: use --scheme {name}")
    if not (description or "").strip():
        fail(f"a new energy scheme needs --description: what produced its energies (code, "
             f"functional, settings, corrections), e.g. --new-scheme {name} --description "
             "'QE 7.2, PBE, SSSP efficiency 1.3, 60 Ry'")
    return name, (name, description or "")


def _check_record_schemes(result, allowed: set[str]) -> None:
    """Records naming their own scheme (``data.scheme``) must name a registered one too."""
    for entry in result.entries:
        if entry.scheme not in allowed:
            exc = unknown_scheme(entry.scheme, sorted(allowed))
            fail(f"{entry.source}: a record's data.scheme: {exc}; nothing was imported")


def _store_entries(
    result, skip_invalid: bool, db: str | None, new: tuple[str, str] | None = None
) -> None:
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
                with repo.transaction():
                    if new is not None:
                        register_scheme(repo, *new)
                    report = engine.ingest(
                        result.entries,
                        progress=lambda i, n: progress.update(task, completed=i, total=n),
                    )
            except (StorageError, SchemeError) as exc:
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
    new: tuple[str, str] | None = None,
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
        _store_entries(result, skip_invalid, db, new)  # lists the rejected records and stops
    if not result.entries and not read.candidates:
        fail(f"the provider returned no usable structures for filter {filter_!r}")
    if result.entries:
        err_console.print(
            f"{len(result.entries)} structures have energies in {energy_field}: "
            f"imported as entries of scheme {scheme}",
            highlight=False,
        )
        _store_entries(result, skip_invalid, db, new)
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
            stored = repo.add_candidates(read.candidates)
        if templates_out is not None:
            write_candidates(templates_out, read.candidates)
        console.print(
            f"stored [bold]{len(stored)}[/] new candidates ({len(read.candidates) - len(stored)} "
            "already stored)"
        )


@app.command("stats", cls=Command, epilog="Example: gnomon db stats --db sqlite:///runs/gnomon.db")
def stats(db: DbOption = None) -> None:
    """Counts of every record type, and entries and stable phases per scheme."""
    with repository(db, read_only=True) as repo:
        counts = repo.stats()
        # the URL on a line of its own, never folded: a table title wraps it at the table's width
        console.print(f"database: {escape(mask_url(repo.url))}", soft_wrap=True, highlight=False)
        table = Table(title="records")
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


@app.command(
    "rebuild-hull",
    cls=Command,
    epilog="Example: gnomon db rebuild-hull --scheme mlip-chgnet-0.3.0",
)
def rebuild_hull(
    scheme: Annotated[str | None, typer.Option(help="Only this scheme.")] = None,
    db: DbOption = None,
) -> None:
    """Recompute every stored hull from the stored entries."""
    with repository(db, create=False) as repo:
        with _progress() as progress:
            task = progress.add_task("rebuilding hulls", total=None)
            report = HullEngine(repo).rebuild(
                scheme, progress=lambda i, n: progress.update(task, completed=i, total=n)
            )
    console.print(
        f"recomputed {sum(len(v) for v in report.recomputed.values())} chemical systems, "
        f"{report.phases_written} phases"
    )


from gnomon.commands.db_admin import register  # noqa: E402 - `db backup | restore | check`

register(app)
