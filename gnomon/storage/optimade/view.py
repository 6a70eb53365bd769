"""What ``gnomon serve`` asks of a backend's served view.

Each backend's package has a view (built from its :class:`~gnomon.storage.reader.PhaseReader`)
and a ``/structures`` collection over it; the serve app sees only this protocol, through the
registry (:mod:`gnomon.storage.backends`).
"""

from __future__ import annotations

from typing import Protocol

from optimade.server.config import ServerConfig
from optimade.server.entry_collections import EntryCollection


class StructureView(Protocol):
    """A read-only view of one database's structures, kept current in the background."""

    size: int
    """Structures in the view now."""

    generation: int
    """Which view answers now: one more at each rebuild (answers kept by the server are kept
    per generation)."""

    def collection(self, config: ServerConfig) -> EntryCollection:
        """optimade's ``/structures`` collection answering from this view."""
        ...

    def maybe_refresh(self) -> None:
        """Rebuild in the background if the database changed (never waits for the rebuild)."""
        ...

    def close(self) -> None:
        """Release the view and what it read the database through."""
        ...
