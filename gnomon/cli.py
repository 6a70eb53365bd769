"""The ``gnomon`` command line: one verb group per stage.

This is the only module that parses command lines. Each sub-command lives in a
``gnomon.commands`` module (a typer app) and is imported only when it runs or its own help is
asked for: the modules import pymatgen, torch, Prefect, and ``gnomon --help`` or
``gnomon phases`` must not wait for all of them. ``COMMANDS`` names each module and repeats
its one-line summary for ``gnomon --help``; tests/commands/test_help.py checks the table
against the commands themselves.
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib
from dataclasses import dataclass
from typing import Annotated, Any

import typer
import typer.main

import gnomon
from gnomon.commands.help_format import Group


@dataclass(frozen=True)
class Lazy:
    """A sub-command: its module and the one-line summary ``gnomon --help`` shows.

    ``group``: the module's ``app`` is the command (``gnomon db ...``); otherwise the command
    of this name in the module's ``commands`` app (``gnomon hull`` in gnomon.commands.phases).
    """

    module: str
    summary: str
    group: bool = True
    hidden: bool = False


COMMANDS: dict[str, Lazy] = {
    "db": Lazy("gnomon.commands.db", "Import entries and inspect the phase database."),
    "phases": Lazy(
        "gnomon.commands.phases", "List the phases found, with their place on the hull.", False
    ),
    "hull": Lazy(
        "gnomon.commands.phases",
        "The convex hull of a chemical system in one energy scheme.",
        group=False,
    ),
    "generate": Lazy("gnomon.commands.generate", "Generate candidate structures."),
    "dedup": Lazy(
        "gnomon.commands.generate", "Remove duplicate structures from a candidate file.", False
    ),
    "model": Lazy("gnomon.commands.model", "Train, list and run the GNN ensembles."),
    "relax": Lazy(
        "gnomon.commands.relax", "Relax structures with an engine through a dispatcher.", False
    ),
    "jobs": Lazy("gnomon.commands.jobs", "Track relaxations submitted to a dispatcher."),
    "campaign": Lazy("gnomon.commands.campaign", "Run, schedule and report discovery campaigns."),
    "serve": Lazy(
        "gnomon.commands.serve", "Serve the phases as an OPTIMADE API and the web explorer.", False
    ),
    "world": Lazy("gnomon.commands.world", "Build, grow and check a labelled world (ML oracle)."),
    "mlip": Lazy("gnomon.commands.mlip", "Fine-tune the universal potential of the mlip stage."),
    "worker": Lazy(
        "gnomon.commands.worker",
        "Run prepared calculation directories (what a batch job executes).",
        group=False,
        hidden=True,
    ),
}

#: Option spellings replaced for one name per idea across commands, still accepted (and not
#: shown) for a release: command path -> {old spelling: the option it now is}.
OLD_OPTIONS: dict[str, dict[str, str]] = {
    "db import": {"--max-records": "--limit"},
    "generate saps": {"--max": "--limit", "--processes": "--workers"},
    "generate random": {"--processes": "--workers"},
    "campaign simulate": {"--json": "--out"},
    "model pretrain": {"--members": "--ensemble", "--width": "--hidden"},
    "serve": {"--refresh": "--poll"},
}


class LazyGroup(Group):
    """The root command: knows its sub-commands by name and imports one when it is used."""

    _summaries_only = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        if self._summaries_only:  # the root's own help page lists summaries only
            return Group(name=cmd_name, help=entry.summary, hidden=entry.hidden)
        return load(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._summaries_only = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._summaries_only = False

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in self.list_commands(ctx):
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)


@functools.cache
def load(name: str) -> Any:
    """The click command ``gnomon NAME`` runs, its module imported now (once)."""
    entry = COMMANDS[name]
    module = importlib.import_module(entry.module)
    if entry.group:
        command = typer.main.get_group(module.app)
    else:
        command = typer.main.get_group(module.commands).commands[name]
    command.name = name
    for path, renamed in OLD_OPTIONS.items():
        first, *rest = path.split()
        if first == name:
            target = command
            for part in rest:
                target = target.commands[part]
            for old, new in renamed.items():
                _accept_old_spelling(target, old, new)
    return command


def _accept_old_spelling(command: Any, old: str, new: str) -> None:
    """``old`` still sets the option now spelt ``new``, and help pages do not show it."""
    option = next(p for p in command.params if new in p.opts)
    alias = copy.copy(option)
    alias.opts, alias.secondary_opts = [old], []
    alias.hidden, alias.expose_value, alias.required = True, False, False
    command.params.append(alias)


def _print_version(value: bool) -> None:
    # gnomon.__version__, not importlib.metadata (a twentieth of a second to import, on every
    # command): tests/commands/test_help.py checks that the two agree
    if value:
        typer.echo(f"gnomon {gnomon.__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="gnomon",
    cls=LazyGroup,
    help="GNoME-style active learning for stable inorganic crystals.",
    epilog="Example: gnomon db import entries.json --scheme vasp-pbe-mp2020\n\n"
    "Each command has its own help: gnomon COMMAND --help",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """GNoME-style active learning for stable inorganic crystals."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
