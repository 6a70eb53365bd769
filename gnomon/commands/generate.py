"""`gnomon generate` commands (being built)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


def dedup() -> None:
    """Remove duplicates from a candidate file."""
