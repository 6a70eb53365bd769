"""`gnomon relax`: relax structures with an engine through a dispatcher."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pymatgen.core import Structure
from rich.progress import Progress
from rich.table import Table

from gnomon.commands.common import DbOption, console, fail, repository, settings
from gnomon.commands.help_format import Command
from gnomon.config import engine_name
from gnomon.dft.dispatcher import DISPATCHERS, make_dispatcher
from gnomon.dft.errors import DispatchError, InputError
from gnomon.pipeline.generation import candidate_io
from gnomon.pipeline.generation.candidate_io import CandidateFileError
from gnomon.storage.documents import Calculation, Entry


def read_structures(paths: list[Path]) -> list[Structure]:
    """Every structure of ``paths`` (any format gnomon reads), or one line naming the file."""
    out: list[Structure] = []
    for path in paths:
        try:
            out += [structure for _, structure in candidate_io.read_structures(path)]
        except CandidateFileError as exc:
            fail(str(exc))
    if not out:
        fail("no structures given")
    return out


def service_for(
    repo, s, dispatchers: list[str], workers: int | None = None, pack: int | None = None
):
    # heavy: jobflow
    from gnomon.dft.service import Relaxations

    return Relaxations(
        repo,
        s.runs_dir,
        {name: make_dispatcher(name, s, workers=workers) for name in dispatchers},
        max_retries=s.slurm.max_retries,
        pack=pack or s.slurm.pack,
        limits=s.relax_limits,
    )

commands = typer.Typer()


@commands.command(
    "relax",
    cls=Command,
    epilog="Example: gnomon relax candidates.json --engine qe --dispatch slurm --wait",
)
def relax(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE...", help="Structure files: CIF, POSCAR, JSON, extxyz."),
    ],
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            "-e",
            metavar="ENGINE",
            help="mlip (CHGNet; also spelt chgnet), sevennet (SevenNet-0), qe or vasp.",
        ),
    ] = "mlip",
    dispatch: Annotated[
        str,
        typer.Option(
            "--dispatch", "-d", metavar="DISPATCHER", help="local, slurm or jobflow-remote."
        ),
    ] = "local",
    wait: Annotated[
        bool, typer.Option("--wait", help="Track until every relaxation ended.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Concurrent local relaxations.")] = 2,
    pack: Annotated[
        int | None, typer.Option(help="Relaxations per batch job (default slurm.pack).")
    ] = None,
    poll: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds between polls with --wait.")
    ] = 5.0,
    timeout: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Give up waiting after this many seconds."),
    ] = None,
    campaign: Annotated[
        str | None, typer.Option(metavar="NAME", help="Campaign the calculations belong to.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Relax structures with an engine through a dispatcher.

    Every input is checked first, then queued and submitted once.
    """
    # heavy: jobflow
    from gnomon.dft.engine import ENGINES, make_engine

    engine = engine_name(engine)  # chgnet is the engine mlip, as in a campaign file
    if engine not in ENGINES:
        fail(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if dispatch not in DISPATCHERS:
        fail(f"unknown dispatcher {dispatch!r}: choose one of {', '.join(DISPATCHERS)}")
    s = settings(db)
    structures = read_structures(files)
    eng = make_engine(engine, s)
    with repository(db) as repo:
        svc = service_for(repo, s, [dispatch], workers=workers, pack=pack)
        try:
            report = svc.submit(structures, eng, dispatch, campaign=campaign)
        except (InputError, DispatchError) as exc:
            fail(f"nothing submitted: {exc}")
        console.print(
            f"{len(report.new)} relaxation(s) queued ({eng.scheme}, {dispatch}), "
            f"{len(report.existing)} already known; "
            f"batches started: {len(report.submitted_batches)}"
        )
        if not wait:
            console.print("track them with [bold]gnomon jobs status[/]")
            return
        _wait(svc, poll, timeout)
        ids = [*report.new, *report.existing]
        show_calculations(repo, ids)


def _wait(svc, poll: float, timeout: float | None) -> None:

    total = svc.pending_work()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("relaxing", total=max(total, 1))

        def update(rep) -> None:
            progress.update(
                task,
                completed=max(0, total - svc.pending_work()),
                description=f"relaxing: {len(rep.running)} running, {len(rep.pending)} pending",
            )

        try:
            svc.wait(poll_s=poll, timeout_s=timeout, on_track=update)
        except TimeoutError as exc:
            fail(str(exc))
        except DispatchError as exc:
            fail(f"tracking stopped: {exc}")


def short_id(calc_id: str) -> str:
    """``<candidate[:8]>:<settings[:6]>``; ``gnomon jobs`` accepts it (and any unique prefix)."""
    cand, _, settings_hash = calc_id.partition(":")
    return f"{cand[:8]}:{settings_hash[:6]}"


def submitted_formulas(repo, calcs: list[Calculation]) -> dict[str, str]:
    """The reduced formula of each calculation's candidate: what a job is, from submission on
    (the relaxed entry's formula is the same, but it exists only once the job is done)."""
    ids = sorted({c.candidate_id for c in calcs})
    if not ids:
        return {}
    return {d["id"]: d["reduced_formula"] for d in repo.find("candidates", {"id": ids})}


def show_calculations(repo, ids: list[str] | None = None, state: str | None = None) -> None:

    if ids is not None:
        calcs = list(repo.query(Calculation, {"id": ids})) if ids else []
    else:
        calcs = repo.calculations(state=state)
    table = Table(title=f"{len(calcs)} calculation(s)")
    table.add_column("id", no_wrap=True, min_width=15)
    table.add_column("formula", overflow="fold")
    table.add_column("scheme", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("batch", overflow="fold")
    table.add_column("tries", justify="right")
    table.add_column("eV/atom", justify="right", no_wrap=True)
    table.add_column("reason", overflow="fold")
    entries = (
        {e.id: e for e in repo.query(Entry, {"id": [c.entry_id for c in calcs if c.entry_id]})}
        if calcs
        else {}
    )
    formulas = submitted_formulas(repo, calcs)
    for c in sorted(calcs, key=lambda c: c.created_at):
        e = entries.get(c.entry_id or "")
        color = {"done": "green", "failed": "red", "cancelled": "yellow"}.get(c.state.value, "cyan")
        batch = ""
        if c.batch_id:
            batch = (
                ":".join(c.batch_id.split(":")[:2])
                if c.batch_id.startswith("local:")
                else f"{c.dispatcher}:{c.batch_id}"
            )
        table.add_row(
            short_id(c.id),
            e.reduced_formula if e else formulas.get(c.candidate_id, ""),
            c.scheme,
            f"[{color}]{c.state.value}[/]",
            batch,
            str(c.attempts),
            f"{e.energy_per_atom:.4f}" if e else "",
            c.failure_reason or "",
        )
    console.print(table)
