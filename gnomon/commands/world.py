"""`gnomon world`: build, grow and check a labelled world (oracle-relaxed crystals).

The oracle runs in worker processes and a build or grow takes hours, so both are resumable:
run the same command again and it picks up where it stopped. See :mod:`gnomon.world`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from gnomon.commands.common import console, fail
from gnomon.world.files import WorldFiles, default_world_dir

app = typer.Typer(no_args_is_help=True)

DirArgument = Annotated[Path | None, typer.Argument(
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


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
def status(directory: DirArgument = None) -> None:
    """How far a build or grow has come: structures planned per wave, relaxed so far."""
    from gnomon.world.manifest import status as world_status  # heavy: torch, ase

    for line in world_status(_files(directory)):
        console.print(line, highlight=False)
