"""`gnomon relax` (being built)."""

from __future__ import annotations


def relax() -> None:
    """Relax structures."""
