"""The SQLite backend: the embedded default, one file in the workspace.

:mod:`.repository` keeps the records (with :mod:`.checkpoint` flushing its WAL off the
writer's path); :mod:`.reader` reads entries and phases for ``gnomon serve``, whose view of
the database is :mod:`.view`, queried through OPTIMADE filters turned into SQL by
:mod:`.filter`, and kept across restarts by :mod:`.view_store`, keyed on the database's
served-content stamp (:mod:`.stamp`, which the repository keeps).
"""

from __future__ import annotations

from gnomon.storage.sqlite.repository import SQLiteRepository, open_sqlite, sqlite_path

__all__ = ["SQLiteRepository", "open_sqlite", "sqlite_path"]
