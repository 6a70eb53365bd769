"""The storage backends, chosen by the database URL's scheme: the one registry.

Each backend is a package under ``gnomon.storage`` holding its repository and its read view
for ``gnomon serve`` (built through its :class:`~gnomon.storage.reader.PhaseReader`). This
table says which package answers which URLs and where its openers are;
:func:`gnomon.storage.open_repository` and the serve app both go through it, and
:func:`check_url` is the one check of a database URL (settings, the CLI and serve call it).
Adding a backend is one package, one entry here, and its parametrisation of the contract
tests (``tests/conftest.py``).

Openers are named as ``"module:function"`` and imported when first used, so that
``import gnomon.storage`` loads neither a database driver nor the OPTIMADE machinery.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gnomon.credentials import mask_url
from gnomon.storage.reader import PhaseReader
from gnomon.storage.repository import Repository, StorageError

if TYPE_CHECKING:  # the OPTIMADE machinery is only loaded by the views themselves
    from gnomon.storage.optimade.view import StructureView


@dataclass(frozen=True)
class Backend:
    """One storage backend: the URL prefixes it answers and where its openers live."""

    name: str
    prefixes: tuple[str, ...]
    example: str
    repository: str
    """``"module:function"``: ``function(url, read_only=False) -> Repository``."""
    reader: str
    """``"module:function"``: ``function(url) -> PhaseReader``, what its view reads through."""
    view: str
    """``"module:function"``: ``function(url, refresh_s) -> StructureView``."""

    def answers(self, url: str) -> bool:
        """Whether ``url`` is one of this backend's, with something after the prefix."""
        return any(url.startswith(p) and len(url) > len(p) for p in self.prefixes)

    def open_repository(self, url: str, read_only: bool = False) -> Repository:
        return _load(self.repository)(url, read_only=read_only)

    def open_reader(self, url: str) -> PhaseReader:
        return _load(self.reader)(url)

    def open_view(self, url: str, refresh_s: float) -> StructureView:
        """The served view of the database at ``url`` (read-only; raises StorageError when
        there is no database to serve)."""
        return _load(self.view)(url, refresh_s)


BACKENDS: tuple[Backend, ...] = (
    Backend(
        name="sqlite",
        prefixes=("sqlite:///",),
        example="sqlite:///path",
        repository="gnomon.storage.sqlite.repository:open_sqlite",
        reader="gnomon.storage.sqlite.reader:open_reader",
        view="gnomon.storage.sqlite.view:open_view",
    ),
    Backend(
        name="mongodb",
        prefixes=("mongodb://", "mongodb+srv://", "mongomock://"),
        example="mongodb://host/db",
        repository="gnomon.storage.mongodb.repository:open_mongodb",
        reader="gnomon.storage.mongodb.reader:open_reader",
        view="gnomon.storage.mongodb.view:open_view",
    ),
)


def _load(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def backend_for(url: str) -> Backend:
    """The backend that answers ``url``, else StorageError naming the URLs gnomon takes (with
    the URL's password masked)."""
    for backend in BACKENDS:
        if backend.answers(url):
            return backend
    examples = " or ".join(b.example for b in BACKENDS)
    raise StorageError(f"unsupported database URL {mask_url(url)!r}: use {examples}")


def check_url(url: str) -> str:
    """``url`` if a backend answers it, else StorageError with a one-line reason."""
    backend_for(url)
    return url
