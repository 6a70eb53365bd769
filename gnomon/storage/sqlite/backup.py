"""Backups of a SQLite database by SQLite's online backup API, and its own integrity check.

The backup API copies the database page by page through SQLite itself, so it sees what a
reader sees: one committed state, whatever campaigns write meanwhile. It is run in one step
(``pages=-1``): in WAL mode that one read transaction never blocks a writer, whereas a backup
taken in several steps starts over each time another process commits, and under a busy
campaign might never finish. The copy is written beside its destination and renamed over it
when complete and checked, so a backup file is either whole or absent.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from gnomon.storage.disk import DiskFull, is_disk_full
from gnomon.storage.documents import RECORD_TYPES
from gnomon.storage.repository import StorageError

_TIMEOUT_S = 120.0


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_TIMEOUT_S)


def integrity_problems(path: Path) -> list[str]:
    """What ``PRAGMA integrity_check`` finds wrong in the file at ``path``, one line each
    (empty when it answers ``ok``); a file SQLite cannot open at all is one problem."""
    try:
        conn = _read_only(path)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [f"{path}: not a readable SQLite database ({exc})"]
    return [] if rows == ["ok"] else [f"{path}: {row}" for row in rows]


def _gnomon_tables(path: Path) -> set[str]:
    conn = _read_only(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    return tables & set(RECORD_TYPES)


def record_counts(path: Path) -> dict[str, int]:
    """Records per gnomon collection in the SQLite file at ``path`` (missing tables count 0)."""
    tables = _gnomon_tables(path)
    conn = _read_only(path)
    try:
        return {name: conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
                if name in tables else 0 for name in RECORD_TYPES}
    finally:
        conn.close()


def backup_sqlite(source: Path, dest: Path) -> dict[str, int]:
    """Copy the live database ``source`` to the new file ``dest``; returns its record counts.

    The copy is a single file (rollback journal, no WAL beside it) that ``gnomon db restore``
    or any SQLite tool opens.
    """
    if not source.exists():
        raise StorageError(f"no gnomon database at {source}")
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = _read_only(source)
        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
            src.close()
        problems = integrity_problems(partial)
        if problems:
            raise StorageError(f"the copy of {source} failed its integrity check: {problems[0]}")
        os.replace(partial, dest)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFull(dest) from exc
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"could not back up {source} to {dest}: {exc}") from exc
        raise
    return record_counts(dest)


def restore_sqlite(backup: Path, target: Path) -> dict[str, int]:
    """Write the backup file ``backup`` over the database ``target`` (created if absent), in
    one transaction of the target's own, so its WAL and readers stay coherent."""
    problems = integrity_problems(backup)
    if problems:
        raise StorageError(f"{backup} is not a usable backup: {problems[0]}")
    if not _gnomon_tables(backup):
        raise StorageError(f"{backup} is a SQLite file but not a gnomon database (none of the "
                           f"tables {', '.join(RECORD_TYPES)})")
    counts = record_counts(backup)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        src = _read_only(backup)
        dst = sqlite3.connect(target, timeout=_TIMEOUT_S, isolation_level=None)
        try:
            dst.execute(f"PRAGMA busy_timeout={int(_TIMEOUT_S * 1000)}")
            src.backup(dst, pages=-1)
        finally:
            dst.close()
            src.close()
    except sqlite3.Error as exc:
        if is_disk_full(exc):
            raise DiskFull(target) from exc
        raise StorageError(f"could not restore {backup} into {target}: {exc}") from exc
    return counts
