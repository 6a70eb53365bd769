"""Entries and their phases read from a gnomon SQLite file, for the served view.

The :class:`~gnomon.storage.reader.PhaseReader` of the SQLite backend. It opens the file
read-only (``mode=ro``): a server never writes the database it serves, nor creates one where
there is none. Its change token is SQLite's ``PRAGMA data_version``, which moves when another
connection commits, asked on one connection kept for the purpose (the pragma compares commits
against that connection's own view of the file).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson

from gnomon.storage.reader import Document
from gnomon.storage.repository import StorageError
from gnomon.storage.sqlite.repository import sqlite_path

_TIMEOUT_S = 120


def _read_only(path: Path, **kwargs: object) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_TIMEOUT_S, **kwargs)


def open_reader(url: str) -> SQLitePhaseReader:
    """The reader of the database at a ``sqlite:///path`` URL (the registry's opener)."""
    return SQLitePhaseReader(sqlite_path(url))


class SQLitePhaseReader:
    """Read-only access to the entries and phases of the gnomon database at ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise StorageError(f"no gnomon database at {self.path}")
        self._watch = _read_only(self.path, check_same_thread=False)
        self._watch_lock = threading.Lock()

    def entries_with_phases(self) -> Iterator[tuple[Document, Document | None]]:
        # entries without a phase (no elemental reference yet) come with None
        conn = _read_only(self.path)
        try:
            cursor = conn.execute(
                "SELECT e.doc, p.doc FROM entries e LEFT JOIN phases p ON p.id = e.id "
                "ORDER BY e.id"
            )
            for entry_doc, phase_doc in cursor:
                entry = orjson.loads(entry_doc)
                if entry.get("structure"):
                    yield entry, orjson.loads(phase_doc) if phase_doc else None
        finally:
            conn.close()

    def change_token(self) -> int:
        with self._watch_lock:
            return self._watch.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        self._watch.close()
