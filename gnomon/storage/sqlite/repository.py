"""The SQLite repository: the embedded default, one file in the workspace.

One table per collection: the record as JSON plus a column per indexed field. WAL mode lets
readers run beside a writer; writers take the database lock with ``BEGIN IMMEDIATE`` and wait
(``busy_timeout``) rather than fail, so several local processes can import at once. Each
thread gets its own connection. A write the filesystem has no room for is rolled back whole
and raised as :class:`~gnomon.storage.disk.DiskFull`, naming the file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from gnomon.storage.disk import DiskFull, is_disk_full
from gnomon.storage.documents import (
    COMPOUND_INDEXES,
    FIXED_BY_ID,
    INDEXED_FIELDS,
    RECORD_TYPES,
    Record,
    single_field_indexes,
)
from gnomon.storage.repository import (
    DatabaseMissing,
    Filters,
    Repository,
    StorageError,
    check_collection,
    check_distinct_field,
    check_filters,
)
from gnomon.storage.sqlite.checkpoint import Checkpointer
from gnomon.storage.sqlite.stamp import ensure_stamp

_BUSY_TIMEOUT_MS = 120_000
_CHUNK = 500  # bound on SQL parameters per IN (...) clause
_AUTOCHECKPOINT_PAGES = 10_000


def _column_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return value


PREFIX = "sqlite:///"


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///path`` URL names (checked by :mod:`gnomon.storage.backends`)."""
    return Path(url[len(PREFIX) :])


def open_sqlite(url: str, read_only: bool = False) -> SQLiteRepository:
    """The repository at a ``sqlite:///path`` URL (the registry's opener)."""
    return SQLiteRepository(sqlite_path(url), read_only=read_only)


class SQLiteRepository(Repository):
    """Repository in a SQLite file (``sqlite:///path/to/gnomon.db``)."""

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self.url = f"sqlite:///{self.path.as_posix()}"
        self._local = threading.local()
        self.checkpointer = Checkpointer(self.path, _BUSY_TIMEOUT_MS / 1000)
        self._tables: set[str] | None = None
        if read_only:
            self._tables = self._existing_tables()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._create_schema()

    def _existing_tables(self) -> set[str]:
        """The tables of an existing database file (read-only opening), or why there are none."""
        if not self.path.is_file():
            what = "a directory" if self.path.is_dir() else "no such file"
            raise DatabaseMissing(f"no gnomon database at {self.path} ({what})")
        try:
            rows = self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            return {r[0] for r in rows.fetchall()}
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StorageError(f"{self.path} is not a SQLite database ({exc})") from None

    # -- connections ----------------------------------------------------------------------
    @property
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None and self.read_only:
            # mode=rw: never creates the file (and SQLite falls back to reading only where
            # the file is write-protected); query_only refuses every write
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=rw", uri=True,
                timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            self._local.depth = 0
        elif conn is None:
            conn = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints run in the background (.checkpoint); SQLite's own stays as a
            # backstop at 10x its default, should that thread be unable to keep up.
            conn.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
            self._local.conn = conn
            self._local.depth = 0
        return conn

    def _create_schema(self) -> None:
        with self._write():
            for name, fields in INDEXED_FIELDS.items():
                cols = "".join(f", {f}" for f in fields)
                self._conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} "
                    f"(id TEXT PRIMARY KEY, doc BLOB NOT NULL{cols})"
                )
                for field in single_field_indexes(name):
                    self._conn.execute(
                        f"CREATE INDEX IF NOT EXISTS ix_{name}_{field} ON {name} ({field})"
                    )
                for compound in COMPOUND_INDEXES.get(name, ()):
                    self._conn.execute(
                        f"CREATE INDEX IF NOT EXISTS ix_{name}_{'_'.join(compound)} "
                        f"ON {name} ({', '.join(compound)})"
                    )
            ensure_stamp(self._conn)  # what gnomon serve keys its kept views on

    @contextmanager
    def _write(self):
        """A write transaction, or a part of the one already open on this thread."""
        if self.read_only:
            raise StorageError(f"{self.path} is open read-only: this command must not write")
        conn = self._conn
        if self._local.depth > 0:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        conn.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        before = conn.total_changes
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite may have rolled back already (SQLITE_FULL does); a COMMIT that failed
            # leaves the transaction open, and it must not stay so for the next writer
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if is_disk_full(exc):
                raise DiskFull(self.path) from exc
            raise
        else:
            self.checkpointer.changed(conn.total_changes - before)
        finally:
            self._local.depth = 0

    def transaction(self):
        @contextmanager
        def _tx():
            with self._write():
                yield self

        return _tx()

    # -- writes ---------------------------------------------------------------------------
    def _rows(self, collection: str, records: Sequence[Record]) -> list[tuple]:
        fields = INDEXED_FIELDS[collection]
        rows = []
        for record in records:
            doc = record.to_doc()
            rows.append(
                (doc["id"], orjson.dumps(doc), *(_column_value(doc.get(f)) for f in fields))
            )
        return rows

    def upsert(self, collection: str, records: Sequence[Record]) -> int:
        check_collection(collection)
        if not records:
            return 0
        fields = INDEXED_FIELDS[collection]
        rows = self._rows(collection, records)
        cols = ", ".join(("id", "doc", *fields))
        marks = ", ".join("?" * (2 + len(fields)))
        fixed = FIXED_BY_ID.get(collection, ())
        updates = ", ".join(f"{c}=excluded.{c}" for c in ("doc", *fields) if c not in fixed)
        with self._write() as conn:
            conn.executemany(
                f"INSERT INTO {collection} ({cols}) VALUES ({marks}) "
                f"ON CONFLICT(id) DO UPDATE SET {updates}",
                rows,
            )
        return len(rows)

    def insert_new(self, collection: str, records: Sequence[Record]) -> list[str]:
        check_collection(collection)
        if not records:
            return []
        fields = INDEXED_FIELDS[collection]
        cols = ", ".join(("id", "doc", *fields))
        marks = ", ".join("?" * (2 + len(fields)))
        with self._write() as conn:
            seen = self.existing_ids(collection, [r.id for r in records])
            fresh = []
            for record in records:  # the first of repeated ids in one call wins
                if record.id not in seen:
                    seen.add(record.id)
                    fresh.append(record)
            conn.executemany(
                f"INSERT INTO {collection} ({cols}) VALUES ({marks})", self._rows(collection, fresh)
            )
        return [record.id for record in fresh]

    def update_fields(self, collection, record_id, fields, expect=None) -> bool:
        check_collection(collection)
        with self._write() as conn:
            row = conn.execute(f"SELECT doc FROM {collection} WHERE id=?", (record_id,)).fetchone()
            if row is None:
                return False
            doc = orjson.loads(row[0])
            for key, wanted in (expect or {}).items():
                allowed = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
                if doc.get(key) not in allowed:
                    return False
            doc.update(fields)
            record = RECORD_TYPES[collection].from_doc(doc)
            self.upsert(collection, [record])
        return True

    def delete(self, collection: str, ids: Iterable[str]) -> int:
        check_collection(collection)
        ids = list(ids)
        n = 0
        with self._write() as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                cur = conn.execute(
                    f"DELETE FROM {collection} WHERE id IN ({','.join('?' * len(chunk))})", chunk
                )
                n += cur.rowcount
        return n

    # -- reads ----------------------------------------------------------------------------
    def _where(self, collection: str, filters: Filters | None) -> tuple[str, list[Any], list]:
        """SQL for scalar filters; list filters larger than one chunk are split by caller."""
        filters = check_filters(collection, filters)
        clauses: list[str] = []
        params: list[Any] = []
        big: list[tuple[str, list]] = []
        for field, value in filters.items():
            if isinstance(value, (list, tuple, set, frozenset)):
                values = [_column_value(v) for v in value]
                if len(values) > _CHUNK:
                    big.append((field, values))
                    continue
                clauses.append(f"{field} IN ({','.join('?' * len(values))})" if values else "0")
                params.extend(values)
            elif value is None:
                clauses.append(f"{field} IS NULL")
            else:
                clauses.append(f"{field} = ?")
                params.append(_column_value(value))
        if len(big) > 1:
            raise StorageError(
                f"at most one filter on {collection} may list more than {_CHUNK} values"
            )
        return " AND ".join(clauses) or "1", params, big

    def _absent(self, collection: str) -> bool:
        """Whether a read-only database lacks this collection's table (made by an older
        gnomon): it reads as empty."""
        return self._tables is not None and collection not in self._tables

    def find(self, collection, filters=None, limit=None) -> Iterator[dict[str, Any]]:
        where, params, big = self._where(collection, filters)
        if self._absent(collection):
            return
        lim = f" LIMIT {int(limit)}" if limit is not None else ""
        if not big:
            sql = f"SELECT doc FROM {collection} WHERE {where} ORDER BY id{lim}"
            rows = self._conn.execute(sql, params).fetchall()
            for (doc,) in rows:
                yield orjson.loads(doc)
            return
        field, values = big[0]
        found = 0
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            sql = (
                f"SELECT doc FROM {collection} WHERE {where} AND "
                f"{field} IN ({','.join('?' * len(chunk))}) ORDER BY id"
            )
            for (doc,) in self._conn.execute(sql, [*params, *chunk]).fetchall():
                if limit is not None and found >= limit:
                    return
                found += 1
                yield orjson.loads(doc)

    def count(self, collection, filters=None) -> int:
        where, params, big = self._where(collection, filters)
        if self._absent(collection):
            return 0
        if big:
            return sum(1 for _ in self.find(collection, filters))
        sql = f"SELECT COUNT(*) FROM {collection} WHERE {where}"
        return self._conn.execute(sql, params).fetchone()[0]

    def distinct(self, collection, field, filters=None) -> list[Any]:
        check_distinct_field(collection, field)
        where, params, big = self._where(collection, filters)
        if self._absent(collection):
            return []
        if big:
            return sorted({d.get(field) for d in self.find(collection, filters)} - {None})
        rows = self._conn.execute(
            f"SELECT DISTINCT {field} FROM {collection} WHERE {where} AND {field} IS NOT NULL",
            params,
        ).fetchall()
        return [r[0] for r in rows]

    def existing_ids(self, collection, ids) -> set[str]:
        check_collection(collection)
        if self._absent(collection):
            return set()
        ids = list(ids)
        found: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = self._conn.execute(
                f"SELECT id FROM {collection} WHERE id IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            found.update(r[0] for r in rows)
        return found

    def close(self) -> None:
        self.checkpointer.stop()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
