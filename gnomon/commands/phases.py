"""`gnomon phases` and `gnomon hull`: what was found, and where it sits."""

from __future__ import annotations

import csv
import io
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pymatgen.core import Structure
from rich.table import Table

from gnomon.commands.common import DbOption, console, fail, repository
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.pipeline.thermo.known import phase_origins
from gnomon.pipeline.thermo.novelty import novelty_of_rows, novelty_text, references_from_files
from gnomon.pipeline.thermo.phase_query import ROW_FIELDS, PhaseQuery, normalise_chemsys
from gnomon.storage.chemsys import subsystems


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    cif = "cif"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
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
PhasesLimitOption = Annotated[int | None, typer.Option(help="At most this many rows.")]
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
        help="More known phases for --novelty (CIF, disorder kept; or Structure JSON); repeatable.",
    ),
]


def phases(
    chemsys: PhasesChemsysOption = None,
    elements: PhasesElementsOption = None,
    scheme: Annotated[str | None, typer.Option(help="Energy scheme.")] = None,
    stable: PhasesStableOption = False,
    max_e_above_hull: Annotated[float | None, typer.Option(help="eV/atom.")] = None,
    format: PhasesFormatOption = OutputFormat.table,
    limit: PhasesLimitOption = None,
    novelty: PhasesNoveltyOption = False,
    known: PhasesKnownOption = None,
    db: DbOption = None,
) -> None:
    """List phases with their place on the hull."""
    query = PhaseQuery(
        chemsys=chemsys,
        elements=elements.split(",") if elements else None,
        scheme=scheme,
        stable=stable,
        max_e_above_hull=max_e_above_hull,
        limit=limit,
    )
    with repository(db) as repo:
        try:
            rows = query.run(repo)
        except ValueError as exc:
            fail(str(exc))
        fields = ROW_FIELDS
        if novelty or known:
            rows = _with_novelty(repo, rows, known or [])
            fields = (*ROW_FIELDS, *NOVELTY_FIELDS)
    _print_phases(rows, fields, format)


_TABLE_COLUMNS = (
    ("formula", "formula"),
    ("chemsys", "chemsys"),
    ("scheme", "scheme"),
    ("energy_per_atom", "E (eV/at)"),
    ("formation_energy_per_atom", "E_f (eV/at)"),
    ("e_above_hull", "E_hull (eV/at)"),
    ("decomposition_energy", "E_decomp (eV/at)"),
    ("is_stable", "stable"),
)


def _print_phases(
    rows: list[dict[str, Any]], fields: tuple[str, ...], format: OutputFormat
) -> None:
    """The rows in the format asked for: JSON, CSV and CIF for programs, a table for people."""
    if format is OutputFormat.json:
        print(json.dumps([{k: r[k] for k in fields} for r in rows], indent=1))
    elif format is OutputFormat.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "decomposes_to": " ".join(r["decomposes_to"])})
        print(buf.getvalue(), end="")
    elif format is OutputFormat.cif:
        _print_cifs(rows)
    else:
        console.print(_phase_table(rows, with_novelty="novelty" in fields))


def _print_cifs(rows: list[dict[str, Any]]) -> None:
    # heavy: pymatgen.io
    from pymatgen.io.cif import CifWriter

    for r in rows:
        if "_structure" not in r:
            continue
        text = str(CifWriter(Structure.from_dict(r["_structure"])))
        print(text.replace("data_", f"data_{r['id']}_", 1))


def _phase_table(rows: list[dict[str, Any]], with_novelty: bool) -> Table:
    columns = [
        *_TABLE_COLUMNS,
        *((("novelty_text", "novelty"),) if with_novelty else ()),
        ("id", "id"),
    ]
    table = Table(title=f"{len(rows)} phases")
    for _, head in columns:
        table.add_column(head, justify="right" if head.startswith("E") else "left")
    for r in rows:
        style = "bold green" if r["is_stable"] else None
        table.add_row(*(_fmt(r[key]) for key, _ in columns), style=style)
    return table


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


def hull(
    chemsys: Annotated[str, typer.Argument(help="Chemical system, e.g. Li-Mn-O.")],
    scheme: Annotated[
        str | None, typer.Option(help="Energy scheme (required when several exist).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a hull diagram PNG (2 to 4 elements).")
    ] = None,
    db: DbOption = None,
) -> None:
    """The convex hull of a chemical system in one energy scheme."""
    try:
        chemsys = normalise_chemsys(chemsys)
    except ValueError as exc:
        fail(str(exc))
    with repository(db) as repo:
        present = sorted(
            {s for s in repo.distinct("entries", "scheme", {"chemsys": subsystems(chemsys)})}
        )
        if scheme is None:
            if not present:
                fail(f"no entries in {chemsys}")
            if len(present) > 1:
                fail(
                    f"{chemsys} has entries in several energy schemes ({', '.join(present)}); "
                    "hulls never mix schemes: pass --scheme"
                )
            scheme = present[0]
        pd = HullEngine(repo).phase_diagram(scheme, chemsys)
        if pd is None:
            fail(f"no hull for {chemsys} in scheme {scheme}: an element has no reference entry")
        rows = PhaseQuery(chemsys=chemsys, scheme=scheme).run(repo)
    table = Table(
        title=(
            f"hull of {chemsys} ({scheme}): "
            f"{len(pd.stable_entries)} stable of {len(pd.all_entries)}"
        )
    )
    for h in ("formula", "E_f (eV/at)", "E_hull (eV/at)", "stable", "decomposes to"):
        table.add_column(h)
    for r in rows:
        table.add_row(
            r["reduced_formula"],
            _fmt(r["formation_energy_per_atom"]),
            _fmt(r["e_above_hull"]),
            "yes" if r["is_stable"] else "",
            _fmt(r["decomposes_to"]),
            style="bold green" if r["is_stable"] else None,
        )
    console.print(table)
    if plot is not None:
        n = len(chemsys.split("-"))
        if not 2 <= n <= 4:
            # heavy: matplotlib
            fail(f"hull plots need 2 to 4 elements; {chemsys} has {n}")
        from gnomon.pipeline.thermo.plots import plot_hull

        plot_hull(pd, plot)
        console.print(f"hull diagram written to {plot}")
