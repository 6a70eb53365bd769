"""`gnomon phases` and `gnomon hull`: what was found, and where it sits."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pymatgen.core import Structure
from rich.table import Table

from gnomon.commands.common import DbOption, console, err_console, fail, repository
from gnomon.commands.help_format import Command
from gnomon.pipeline.thermo import phase_query
from gnomon.pipeline.thermo.known import phase_origins
from gnomon.pipeline.thermo.novelty import novelty_of_rows, novelty_text, references_from_files
from gnomon.pipeline.thermo.phase_query import ROW_FIELDS, PhaseQuery, normalise_chemsys
from gnomon.pipeline.thermo.units import (
    MEANINGS,
    UNITS,
    resolution_note,
    rounded_row,
    shown,
    yes_no,
)
from gnomon.storage import Repository
from gnomon.storage.chemsys import subsystems


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    cif = "cif"


#: rows of a `gnomon phases` table unless --limit says otherwise: a screenful, quick on any
#: database; --limit 0 or a file format gives every row
TABLE_ROWS = 50
#: above this many rows a table is plain aligned text, not a rich Table (which takes seconds
#: per thousand rows to lay out)
RICH_ROWS = 200


def _cell(key: str, value: Any) -> str:
    """A table cell: numbers at their unit's resolution (gnomon.pipeline.thermo.units),
    yes/no fields as ``yes``/``no``, lists joined."""
    if key in UNITS:
        return shown(value, UNITS[key])
    if isinstance(value, bool) or key.startswith("is_"):
        return yes_no(value)
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


PhasesChemsysOption = Annotated[
    str | None, typer.Option(help="Chemical space, e.g. Li-Mn-O (all its subsystems).")
]
PhasesElementsOption = Annotated[
    str | None, typer.Option(help="Phases containing all of these, e.g. Li,O.")
]
PhasesStableOption = Annotated[bool, typer.Option("--stable", help="Only phases on the hull.")]
PhasesFormatOption = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]
PhasesLimitOption = Annotated[
    int | None,
    typer.Option(
        min=0,
        help=f"At most this many rows; 0 for every row (default: {TABLE_ROWS} in a table, every "
        "row as json, csv or cif).",
    ),
]
PhasesNoveltyOption = Annotated[
    bool,
    typer.Option(
        "--novelty",
        help="Check each discovery against the known phases: new, known, or an ordering "
        "of a known disordered phase, with the AMD distance to the nearest known phase.",
    ),
]
PhasesKnownOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--known",
        metavar="FILE",
        help="More known phases for --novelty (CIF, disorder kept; or Structure JSON); repeatable.",
    ),
]

commands = typer.Typer()


@commands.command(
    "phases",
    cls=Command,
    epilog="Example: gnomon phases --chemsys Li-Mn-O --stable --format json",
)
def phases(
    chemsys: PhasesChemsysOption = None,
    elements: PhasesElementsOption = None,
    scheme: Annotated[str | None, typer.Option(help="Energy scheme.")] = None,
    stable: PhasesStableOption = False,
    max_e_above_hull: Annotated[
        float | None,
        typer.Option(metavar="EV", help="Only phases at most this far above the hull, eV/atom."),
    ] = None,
    format: PhasesFormatOption = OutputFormat.table,
    limit: PhasesLimitOption = None,
    novelty: PhasesNoveltyOption = False,
    known: PhasesKnownOption = None,
    db: DbOption = None,
) -> None:
    """List the phases found, with their place on the hull."""
    table = format is OutputFormat.table
    query = PhaseQuery(
        chemsys=chemsys,
        elements=elements.split(",") if elements else None,
        scheme=scheme,
        stable=stable,
        max_e_above_hull=max_e_above_hull,
        limit=(TABLE_ROWS if table else None) if limit is None else (limit or None),
    )
    with repository(db, read_only=True) as repo:
        try:
            schemes = query.schemes(repo)
            if novelty or known:
                rows = _with_novelty(repo, query.run(repo), known or [])
                fields = (*ROW_FIELDS, *NOVELTY_FIELDS)
            else:
                rows, fields = query.rows(repo), ROW_FIELDS
            about: dict[str, Any] = {"schemes": schemes}
            if known:
                about["known_files"] = [str(p.resolve()) for p in known]
            if not query.computes_spacegroups(repo):
                about["spacegroup_note"] = _not_computed()
            if table:
                _print_phases(list(rows), fields, schemes, query, repo)
            else:
                write_rows(rows, fields, format, about)
        except ValueError as exc:
            fail(str(exc))


def _not_computed(n: int | None = None) -> str:
    """Why ``n`` rows (or some) show no space group: the result is too long to run spglib on
    each entry stored without one."""
    if n is None:
        who = "entries stored without a space group show"
    elif n == 1:
        who = "1 entry stored without a space group shows"
    else:
        who = f"{n:,} entries stored without a space group show"
    return (
        f"{who} none: it is computed only for results of at most "
        f"{phase_query.SPACEGROUP_ON_THE_FLY} rows (narrow the query or pass --limit to see it)"
    )


def _print_phases(
    rows: list[dict[str, Any]],
    fields: tuple[str, ...],
    schemes: list[str],
    query: PhaseQuery,
    repo: Repository,
) -> None:
    """The rows for people, and a line saying how many there are when not all are shown."""
    total = len(rows)
    if query.limit is not None and len(rows) >= query.limit:
        total = query.count(repo)
    columns = _phase_columns(fields, schemes)
    title = f"{len(rows):,}" + (f" of {total:,}" if total > len(rows) else "") + " phases"
    title += f", scheme {schemes[0]}" if len(schemes) == 1 else ""
    if len(rows) <= RICH_ROWS:
        console.print(_phase_table(rows, columns, title, resolution_note(fields)))
    else:
        _print_plain(rows, columns, title, resolution_note(fields))
    unknown = sum(1 for r in rows if r["spacegroup"] is None and "_structure" in r)
    if unknown and not query.computes_spacegroups(repo):
        console.print(_not_computed(unknown), highlight=False)
    if total > len(rows):
        console.print(
            f"showing {len(rows):,} of {total:,} phases; --limit 0 for all, "
            "--format csv/json for files",
            highlight=False,
        )


def _header(key: str, words: str) -> str:
    """A column header that names its unit: ``E above hull (eV/atom)``."""
    return f"{words} ({UNITS[key]})" if key in UNITS else words


# what each energy column of a table is: corrected means with the scheme's corrections
# (MP2020 for vasp-pbe-mp2020; the same number as uncorrected in every other scheme)
_TABLE_COLUMNS = (
    ("formula", "formula"),
    ("spacegroup", "space group"),
    ("chemsys", "chemsys"),
    ("scheme", "scheme"),
    ("energy_per_atom", _header("energy_per_atom", "E corrected")),
    ("uncorrected_energy_per_atom", _header("uncorrected_energy_per_atom", "E uncorrected")),
    ("formation_energy_per_atom", _header("formation_energy_per_atom", "E_f corrected")),
    ("e_above_hull", _header("e_above_hull", "E above hull")),
    ("decomposition_energy", _header("decomposition_energy", "E_decomp")),
    ("is_stable", "on hull"),
)


def write_rows(
    rows: Iterable[dict[str, Any]],
    fields: tuple[str, ...],
    format: OutputFormat,
    about: dict[str, Any],
) -> None:
    """Rows for programs, written as they come: JSON (``about``, the units and the rounding
    rule beside the rows, one row a line), CSV or CIF. Numbers are rounded to what the method
    resolves (gnomon.pipeline.thermo.units)."""
    out = sys.stdout
    if format is OutputFormat.json:
        units = {k: UNITS[k] for k in fields if k in UNITS}
        head = {
            **about,
            "units": units,
            "resolution": resolution_note(fields),
            "meanings": {k: MEANINGS[k] for k in units},
        }
        out.write(json.dumps(head, indent=1, ensure_ascii=False)[:-2] + ',\n "phases": [')
        for k, r in enumerate(rows):
            row = rounded_row({f: r.get(f) for f in fields})
            out.write(("," if k else "") + "\n  " + json.dumps(row, ensure_ascii=False))
        out.write("\n ]\n}\n")
    elif format is OutputFormat.csv:
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**rounded_row(r), "decomposes_to": " ".join(r["decomposes_to"])})
    elif format is OutputFormat.cif:
        _print_cifs(rows)


def _print_cifs(rows: list[dict[str, Any]]) -> None:
    # heavy: pymatgen.io
    from pymatgen.io.cif import CifWriter

    for r in rows:
        if "_structure" not in r:
            continue
        text = str(CifWriter(Structure.from_dict(r["_structure"])))
        print(text.replace("data_", f"data_{r['id']}_", 1))


def _phase_columns(fields: tuple[str, ...], schemes: list[str]) -> list[tuple[str, str]]:
    """(field, header) of a phases table; with one scheme it is named in the title, not on
    every row."""
    return [
        *(c for c in _TABLE_COLUMNS if not (c[0] == "scheme" and len(schemes) == 1)),
        *((("novelty_text", "novelty"),) if "novelty" in fields else ()),
        ("id", "id"),
    ]


def _phase_table(
    rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str, caption: str
) -> Table:
    table = Table(title=title, caption=caption)
    for key, head in columns:
        table.add_column(head, justify="right" if key in UNITS else "left")
    for r in rows:
        style = "bold green" if r["is_stable"] else None
        table.add_row(*(_cell(key, r.get(key)) for key, _ in columns), style=style)
    return table


def _print_plain(
    rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str, caption: str
) -> None:
    """A long table as aligned plain text: the same columns and cells as the rich table, laid
    out in one pass (numbers right-aligned), written in blocks."""
    cells = [[_cell(key, r.get(key)) for key, _ in columns] for r in rows]
    heads = [head for _, head in columns]
    widths = [max(len(head), *(len(row[k]) for row in cells)) for k, head in enumerate(heads)]
    right = [key in UNITS for key, _ in columns]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ).rstrip()

    out = sys.stdout
    out.write(f"{title}\n{line(heads)}\n{'  '.join('-' * w for w in widths)}\n")
    for start in range(0, len(cells), 5000):
        out.write("".join(line(row) + "\n" for row in cells[start : start + 5000]))
    out.write(f"{caption}\n")


NOVELTY_FIELDS = (
    "origin",
    "novelty",
    "nearest_known_id",
    "nearest_known_formula",
    "nearest_known_source",
    "nearest_known_amd",
)


def _with_novelty(repo, rows: list[dict], known: list[Path]) -> list[dict]:
    """``rows`` with where each phase came from and, for a campaign's discoveries, its novelty
    (``gnomon.pipeline.thermo.novelty``); ``novelty_text`` is the table's cell."""

    try:
        extra = references_from_files(known)
    except ValueError as exc:
        fail(str(exc))
    found = novelty_of_rows(repo, rows, extra)
    out = []
    for r, origin in zip(rows, phase_origins(repo, rows), strict=True):
        result = found.get(r["id"])
        fields = result.as_dict() if result else dict.fromkeys(NOVELTY_FIELDS[1:])
        out.append({**r, "origin": origin, **fields, "novelty_text": novelty_text(result, origin)})
    return out


HullPlotOption = Annotated[
    Path | None,
    typer.Option(
        help="Also draw the hull to FILE (.png, .svg or .pdf; 2 to 4 elements): every phase, "
        "the unstable ones coloured and labelled by their energy above the hull.",
        metavar="FILE",
    ),
]
HullFormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="table for people; json, csv or cif for programs.")
]

_HULL_COLUMNS = (
    ("formula", "formula"),
    ("spacegroup", "space group"),
    ("formation_energy_per_atom", _header("formation_energy_per_atom", "E_f corrected")),
    ("e_above_hull", _header("e_above_hull", "E above hull")),
    ("decomposition_energy", _header("decomposition_energy", "E_decomp")),
    ("is_stable", "on hull"),
    ("decomposes_to", "decomposes to"),
)


@commands.command("hull", cls=Command, epilog="Example: gnomon hull Li-O --plot hull.png")
def hull(
    chemsys: Annotated[str, typer.Argument(help="Chemical system, e.g. Li-Mn-O.")],
    scheme: Annotated[
        str | None, typer.Option(help="Energy scheme (required when several exist).")
    ] = None,
    plot: HullPlotOption = None,
    format: HullFormatOption = OutputFormat.table,
    db: DbOption = None,
) -> None:
    """The convex hull of a chemical system in one energy scheme."""
    try:
        chemsys = normalise_chemsys(chemsys)
    except ValueError as exc:
        fail(str(exc))
    if plot is not None and not 2 <= len(chemsys.split("-")) <= 4:
        fail(f"hull plots need 2 to 4 elements; {chemsys} has {len(chemsys.split('-'))}")
    # heavy: pymatgen.analysis (the hull engine; `gnomon phases` never waits for it)
    from gnomon.pipeline.thermo.hull import HullEngine

    with repository(db, read_only=True) as repo:
        scheme = _hull_scheme(repo, chemsys, scheme)
        pd = HullEngine(repo).phase_diagram(scheme, chemsys)
        if pd is None:
            fail(f"no hull for {chemsys} in scheme {scheme}: an element has no reference entry")
        rows = PhaseQuery(chemsys=chemsys, scheme=scheme).run(repo)
    if format is OutputFormat.table:
        console.print(_hull_table(rows, chemsys, scheme, len(pd.stable_entries)))
    else:
        about = {"chemsys": chemsys, "scheme": scheme, "n_stable": len(pd.stable_entries)}
        if plot is not None:
            about["plot"] = str(plot.resolve())
        write_rows(rows, ROW_FIELDS, format, about)
    if plot is not None:
        # heavy: matplotlib
        from gnomon.pipeline.thermo.plots import plot_hull

        try:
            plot_hull(pd, plot, scheme=scheme)
        except (OSError, ValueError) as exc:  # an unwritable folder, a suffix with no format
            reason = getattr(exc, "strerror", None) or exc
            fail(f"cannot write the hull diagram to {plot}: {reason}")
        err_console.print(f"hull diagram written to {plot.resolve()}", soft_wrap=True)


def _hull_scheme(repo, chemsys: str, scheme: str | None) -> str:
    """``scheme``, or the only scheme with entries in ``chemsys``: hulls never mix schemes."""
    if scheme is not None:
        return scheme
    present = sorted(set(repo.distinct("entries", "scheme", {"chemsys": subsystems(chemsys)})))
    if not present:
        fail(f"no entries in {chemsys}")
    if len(present) > 1:
        fail(
            f"{chemsys} has entries in several energy schemes ({', '.join(present)}); "
            "hulls never mix schemes: pass --scheme"
        )
    return present[0]


def _hull_table(rows: list[dict[str, Any]], chemsys: str, scheme: str, n_stable: int) -> Table:
    table = Table(
        title=f"hull of {chemsys} ({scheme}): {n_stable} stable of {len(rows)}",
        caption=resolution_note(ROW_FIELDS),
    )
    for key, head in _HULL_COLUMNS:
        table.add_column(head, justify="right" if key in UNITS else "left")
    for r in rows:
        table.add_row(
            *(_cell(key, r.get(key)) for key, _ in _HULL_COLUMNS),
            style="bold green" if r["is_stable"] else None,
        )
    return table
