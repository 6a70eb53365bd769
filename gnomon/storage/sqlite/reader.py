"""Entries and their phases read from a gnomon SQLite file, for the served view.

The :class:`~gnomon.storage.reader.PhaseReader` of the SQLite backend. It opens the file
read-only (``mode=ro``): a server never writes the database it serves, nor creates one where
there is none. Its change token is the database's served-content stamp (:mod:`.stamp`), which
moves with every change to entries or phases and with nothing else; a database without a stamp
(never opened for writing by a gnomon that keeps one) falls back to SQLite's
``PRAGMA data_version``, which moves whenever another connection commits anything. Both are
asked on one connection kept for the purpose (the pragma compares commits against that
connection's own view of the file).
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
from gnomon.storage.sqlite.stamp import read_stamp

_TIMEOUT_S = 120


def _read_only(path: Path, **kwargs: object) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_TIMEOUT_S, **kwargs)


def _as_bytes(doc: bytes | str) -> bytes:
    """A stored document as bytes: gnomon stores BLOBs, a hand-edited row may hold text."""
    return doc.encode() if isinstance(doc, str) else doc


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
        for _, entry_doc, phase_doc in self.stored_rows():
            entry = orjson.loads(entry_doc)
            if entry.get("structure"):
                yield entry, orjson.loads(phase_doc) if phase_doc else None

    def stored_rows(self) -> Iterator[tuple[str, bytes, bytes | None]]:
        """Every entry's id and stored document with its phase's, as stored (unparsed), in id
        order; None for an entry without a phase (no elemental reference yet). What a view
        compares with the rows it was built from, to make only the changed ones again."""
        conn = _read_only(self.path)
        try:
            for entry_id, entry_doc, phase_doc in conn.execute(
                "SELECT e.id, e.doc, p.doc FROM entries e LEFT JOIN phases p ON p.id = e.id "
                "ORDER BY e.id"
            ):
                yield entry_id, _as_bytes(entry_doc), phase_doc and _as_bytes(phase_doc)
        finally:
            conn.close()

    def stamp(self) -> str | None:
        """The database's served-content stamp now, or None where it keeps none."""
        with self._watch_lock:
            return read_stamp(self._watch)

    def change_token(self) -> str | tuple[str, int]:
        with self._watch_lock:
            stamp = read_stamp(self._watch)
            if stamp is not None:
                return stamp
            return "data_version", self._watch.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        self._watch.close()
