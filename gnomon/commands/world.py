"""`gnomon world`: build, grow, cover and check a labelled world (oracle-relaxed crystals).

The oracle runs in worker processes and a build or grow takes hours, so both are resumable:
run the same command again and it picks up where it stopped. See :mod:`gnomon.world`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from pymatgen.core import Element  # heavy: pymatgen's periodic table
from rich.table import Table

from gnomon.commands.common import console, fail
from gnomon.commands.help_format import Command, Group
from gnomon.world.coverage import COVER_ANIONS, DEFAULT_PER_SYSTEM, Coverage, world_coverage
from gnomon.world.files import WorldFiles, default_world_dir, load_world

app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    help="Build, grow and check a labelled world (ML oracle).",
)

DirArgument = Annotated[Path | None, typer.Argument(
    metavar="DIR",
    help="World folder (world.jsonl.gz, heldout.json, manifest.json); default: the shipped "
    "world, bench/world of the checkout.", show_default=False)]
WorkersOption = Annotated[int, typer.Option(help="Oracle (and planning) worker processes.")]


def _files(directory: Path | None) -> WorldFiles:
    return WorldFiles(directory if directory is not None else default_world_dir())


def _at(hhmm: str) -> float:
    """Epoch seconds of the next local HH:MM."""
    try:
        h, m = (int(x) for x in hhmm.split(":"))
    except ValueError:
        fail(f"not a time HH:MM: {hhmm!r}")
        raise AssertionError from None  # unreachable
    now = time.localtime()
    t = time.mktime((now.tm_year, now.tm_mon, now.tm_mday, h, m, 0, 0, 0, -1))
    return t if t > time.time() - 12 * 3600 else t + 86400


def _log() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")


@app.command("build", cls=Command, epilog="Example: gnomon world build bench/world --workers 4")
def build(
    directory: DirArgument = None,
    workers: WorkersOption = 2,
    saps: Annotated[int, typer.Option(help="Wave-1 SAPS structures per system.")] = 26,
    random: Annotated[int, typer.Option(help="Wave-1 random structures per system.")] = 12,
    known: Annotated[int, typer.Option(help="Wave-2 SAPS structures per system.")] = 20,
    until: Annotated[tuple[str, str] | None, typer.Option(
        metavar="WAVE1 WAVE2", help="Local times HH:MM at which each wave's relaxation "
        "stops; the world is written from what was relaxed.")] = None,
) -> None:
    """Plan, relax (CHGNet oracle) and label a world: the elements, then waves 1 and 2."""
    from gnomon.world.build import build as build_world  # heavy: torch, ase

    files = _files(directory)
    _log()
    deadlines = (_at(until[0]), _at(until[1])) if until else (None, None)
    build_world(files, workers, saps, random, known, deadlines)
    check(files.root)


@app.command(
    "grow",
    cls=Command,
    epilog="Example: gnomon world grow bench/world --per-system 80 --until 07:00",
)
def grow(
    directory: DirArgument = None,
    workers: WorkersOption = 2,
    per_system: Annotated[int, typer.Option(help="Structures per system to reach.")] = 55,
    until: Annotated[str | None, typer.Option(
        metavar="HH:MM", help="Local time at which relaxation stops.")] = None,
    write_partial: Annotated[bool, typer.Option(
        "--write-partial", help="At --until, write the world from what is relaxed (manifest: "
        "complete false).")] = False,
) -> None:
    """Grow a world by one more wave (or finish the last one): more structures per system."""
    from gnomon.world.grow import grow as grow_world  # heavy: torch, ase

    files = _files(directory)
    if not files.manifest.is_file():
        fail(f"no world to grow in {files.root} (gnomon world build first)")
    _log()
    grow_world(files, workers, per_system, _at(until) if until else None,
               write_partial=write_partial)
    check(files.root)  # the shipped files: unchanged by an incomplete grow unless --write-partial


def coverage_table(cov: Coverage) -> Table:
    """Cations down, anions across: structures of each binary; H held out, · none."""
    table = Table()
    table.add_column("")
    for a in cov.anions:
        table.add_column(a, justify="right")
    for c in cov.cations:
        cells = []
        for a in cov.anions:
            n = cov.count(c, a)
            held = "-".join(sorted((c, a))) in cov.held_out
            cells.append(f"H{n}" if held else (str(n) if n else "·"))
        table.add_row(c, *cells)
    return table


def _symbols(text: str, what: str) -> tuple[str, ...]:
    """A comma-separated list of element symbols, each checked."""

    symbols = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    bad = [x for x in symbols if not Element.is_valid_symbol(x)]
    if bad:
        fail(f"not element symbols in --{what}: {', '.join(bad)}")
    return symbols


@app.command(
    "cover",
    cls=Command,
    epilog="Example: gnomon world cover bench/world --anions O,S --per-system 8",
)
def cover(
    directory: DirArgument = None,
    anions: Annotated[str, typer.Option(
        metavar="ELEMENTS",
        help="Anions, in the order they are covered.")] = ",".join(COVER_ANIONS),
    elements: Annotated[str, typer.Option(
        metavar="ELEMENTS",
        help="Elements beyond the world's own (comma-separated) whose binaries with the "
        "anions are covered too; their references are planned from ASE's dcdft set.")] = "",
    cations: Annotated[str, typer.Option(
        metavar="ELEMENTS",
        help="Only these cations (comma-separated); default: every element of the world and "
        "of --elements that is not an anion.")] = "",
    per_system: Annotated[int, typer.Option(
        help="Structures each binary should reach.")] = DEFAULT_PER_SYSTEM,
    between_cations: Annotated[bool, typer.Option(
        "--between-cations", help="Also the cations' binaries with each other (alloys and "
        "intermetallics), after the anions'.")] = False,
    ternaries: Annotated[int, typer.Option(
        min=0, metavar="K", help="Also A–B–X ternaries, last: each B cation (not alkali or "
        "alkaline earth) with K of the A cations, for every anion.")] = 0,
    workers: WorkersOption = 1,
    until: Annotated[str | None, typer.Option(
        metavar="HH:MM", help="Local time at which planning and relaxation stop.")] = None,
    write_partial: Annotated[bool, typer.Option(
        "--write-partial", help="At --until, write the world with what is relaxed (manifest: "
        "complete false).")] = False,
) -> None:
    """Cover chemistry before depth: add the cation–anion binaries the world lacks, with
    --between-cations the cation–cation ones, and with --ternaries A–B–X ternaries.

    Small prototype cells, charge-balanced first, anion by anion (oxides, sulfides, halides
    first); held-out systems are never planned into. Resumable: run it again to go on.
    """
    from gnomon.world.cover import CoverSpec, unknown_elements  # heavy: torch, ase
    from gnomon.world.cover import cover as cover_world  # heavy: torch, ase

    files = _files(directory)
    if not files.manifest.is_file():
        fail(f"no world to cover in {files.root} (gnomon world build first)")
    extra = _symbols(elements, "elements")
    missing = unknown_elements(extra)
    if missing:
        fail(f"no reference structure for {', '.join(missing)} (ASE's dcdft set lacks them)")
    spec = CoverSpec(anions=_symbols(anions, "anions"), extra_elements=extra,
                     per_system=per_system, only_cations=_symbols(cations, "cations"),
                     between_cations=between_cations, ternary_partners=ternaries)
    _log()
    complete = cover_world(files, spec, workers, _at(until) if until else None,
                           write_partial=write_partial)
    console.print(f"cover {'complete' if complete else 'stopped (run again to resume)'}",
                  highlight=False)
    check(files.root)


@app.command(
    "coverage",
    cls=Command,
    epilog="Example: gnomon world coverage bench/world --anions O,S,F",
)
def coverage(
    directory: DirArgument = None,
    anions: Annotated[str, typer.Option(
        metavar="ELEMENTS", help="Anions, the table's columns.")] = ",".join(
        COVER_ANIONS),
) -> None:
    """Which cation–anion pairs the world holds: structures of each binary system."""
    files = _files(directory)
    try:
        rows, held = load_world(files)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        fail(f"cannot read the world in {files.root}: {exc}")
        return
    cov = world_coverage(rows, held, _symbols(anions, "anions"))
    console.print(coverage_table(cov))
    console.print(f"{cov.held} of {cov.pairs} cation–anion pairs held (structures of each "
                  "binary system; H held out, · none); "
                  f"{cov.cation_pairs_held} of {cov.cation_pairs} cation–cation pairs; "
                  "cation–cation–anion ternary systems: "
                  + (", ".join(f"{a} {n}" for a, n in cov.ternary.items()) or "none"),
                  highlight=False)


@app.command("check", cls=Command, epilog="Example: gnomon world check bench/world")
def check(directory: DirArgument = None) -> None:
    """Verify a world's files against the hashes and counts of its manifest."""
    from gnomon.world.manifest import check as check_world  # heavy: torch, ase

    files = _files(directory)
    try:
        report = check_world(files)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        fail(f"cannot read the world in {files.root}: {exc}")
        return
    for name, ok, digest in report.files:
        console.print(f"{name:20s} {'ok' if ok else 'MISMATCH'}  {digest[:16]}", highlight=False)
    if report.structures is not None:
        console.print(f"{report.structures} structures, {report.systems} systems, "
                      f"{report.held_out} held out", highlight=False)
    if not report.ok:
        fail(f"the world in {files.root} fails its check: {'; '.join(report.problems)}")


@app.command("status", cls=Command, epilog="Example: gnomon world status bench/world")
def status(directory: DirArgument = None) -> None:
    """How far a build, grow or cover has come: structures planned per wave, relaxed so far.
    """
    from gnomon.world.manifest import status as world_status  # heavy: torch, ase

    for line in world_status(_files(directory)):
        console.print(line, highlight=False)
