"""The narrow read interface a served view builds from.

``gnomon serve`` keeps a view of the database shaped for OPTIMADE filters (one flat row per
structure). To build it, a view needs two things of the database and nothing more: every entry
that has a structure, each with its phase, and a cheap token that changes when those may have.
Each backend implements :class:`PhaseReader` beside its repository, reading its own tables;
the views never touch a backend's tables themselves, so a new backend's view needs only a
reader.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any, Protocol

Document = dict[str, Any]


class PhaseReader(Protocol):
    """Read-only access to entries and their phases, for building a served view."""

    def entries_with_phases(self) -> Iterator[tuple[Document, Document | None]]:
        """Every stored entry that has a structure (``Entry.to_doc()``), in id order, with its
        phase document, or None for an entry not on a hull yet (no elemental reference)."""
        ...

    def change_token(self) -> Hashable:
        """A value that changes whenever entries or phases may have: cheap, asked at most every
        few seconds by a running server."""
        ...

    def close(self) -> None:
        """Release what the reader holds (connections)."""
        ...
