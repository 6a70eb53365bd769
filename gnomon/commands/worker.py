"""`gnomon worker`: what a batch job runs on its node (hidden from help pages)."""

from __future__ import annotations

from typing import Annotated

import typer

from gnomon.commands.help_format import Command
from gnomon.dft.worker import run_batch

commands = typer.Typer()


@commands.command(
    "worker",
    cls=Command,
    hidden=True,
    help="Run prepared calculation directories (what a batch job executes).",
    epilog="Example: gnomon worker runs/batch-1/calc-a runs/batch-1/calc-b",
)
def worker(
    workdirs: Annotated[
        list[str], typer.Argument(metavar="DIR...", help="Prepared calculation directories.")
    ],
) -> None:
    """A batch job's whole command line: its exit status is the batch's."""
    raise typer.Exit(run_batch(workdirs))
