"""OPTIMADE structures over a gnomon SQLite database: the SQLite backend's serve view.

gnomon keeps an entry (with its structure) and its phase (with e_above_hull) in two tables,
as JSON documents plus a few indexed columns (:mod:`gnomon.storage.sqlite.repository`). A
filter such as ``elements HAS ALL "Li","O" AND _gnomon_e_above_hull<=0.05`` needs both, per
element, on 10^5 rows in well under 100 ms, so ``gnomon serve`` answers from a *view*: a
separate SQLite file in a temporary directory, built from the database, with one row per
structure (:func:`gnomon.storage.optimade.resources.structure_row`), a column per scalar
field, a membership table for list fields (``structure_lists``: elements, species_at_sites,
...) and an index on each. The gnomon database itself is only read, through
:class:`~.reader.SQLitePhaseReader` (``mode=ro``), never written.

How the view stays current: it is built when the server starts, so it reflects the database
as it was then. Afterwards, at most every ``refresh_s`` seconds a request asks SQLite whether
any other connection has committed to the database since (``PRAGMA data_version``); if one
has, a new view is built in a background thread while the old one keeps answering, and the
server switches to the new one when it is complete. A campaign ingesting while the server runs
is therefore seen within ``refresh_s`` plus one build (seconds for 10^5 structures).
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from optimade.models import StructureResource
from optimade.server.config import ServerConfig
from optimade.server.mappers import StructureMapper

from gnomon.storage.disk import DiskFull, is_disk_full
from gnomon.storage.optimade.collection import ReadOnlyCollection
from gnomon.storage.optimade.limits import QUERY_TIME_LIMIT_S
from gnomon.storage.optimade.refresh import RefreshingView
from gnomon.storage.optimade.resources import LIST_FIELDS, served_rows
from gnomon.storage.reader import PhaseReader
from gnomon.storage.sqlite.filter import (
    COLUMNS,
    MASK_COLUMNS,
    Sql,
    SQLiteTransformer,
    element_masks,
)
from gnomon.storage.sqlite.reader import SQLitePhaseReader, open_reader

log = logging.getLogger(__name__)

_BATCH = 2000
#: SQLite virtual-machine steps between two looks at the request's deadline (~1 ms of work)
_PROGRESS_STEPS = 10_000
_COUNTS_KEPT = 1024
_INDEXED = ("id", "last_modified", "nelements", "nsites", "chemical_formula_reduced",
            "chemical_formula_anonymous", "e_above_hull", "formation_energy_per_atom",
            "decomposition_energy", "energy_per_atom", "scheme", "campaign", "round")
_FIRST = ["e_above_hull", "nelements", "nsites", "is_stable", "formation_energy_per_atom"]
_SQL_TYPES = {"string": "TEXT", "timestamp": "REAL", "integer": "INTEGER", "float": "REAL",
              "boolean": "INTEGER"}


def _column_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "timestamp":
        return value.timestamp()
    if kind == "boolean":
        return int(bool(value))
    return value


def _ordered_columns() -> list[str]:
    """The view's scalar columns, those most filters test first: SQLite decodes a row's columns
    in order."""
    return sorted(COLUMNS, key=lambda c: (c not in _FIRST, _FIRST.index(c) if c in _FIRST else 0))


def _create_tables(dst: sqlite3.Connection, columns: list[str]) -> str:
    """Create the view's tables in ``dst``; returns the INSERT of one ``structures`` row.

    Rows are narrow (scalars and the element masks) so that a scan of 10^5 structures reads a
    few MB; the documents live in their own table and are read only for the page returned.
    """
    col_defs = ", ".join(f"{c} {_SQL_TYPES[COLUMNS[c][1]]}" for c in columns)
    masks = ", ".join(f"{c} INTEGER NOT NULL" for c in MASK_COLUMNS)
    dst.execute(f"CREATE TABLE structures (sid INTEGER PRIMARY KEY, {masks}, {col_defs})")
    dst.execute("CREATE TABLE structure_docs (sid INTEGER PRIMARY KEY, doc BLOB NOT NULL)")
    dst.execute("CREATE TABLE structure_lists (sid INTEGER NOT NULL, field TEXT NOT NULL, value)")
    marks = ", ".join("?" * (len(columns) + 1 + len(MASK_COLUMNS)))
    return (f"INSERT INTO structures (sid, {', '.join(MASK_COLUMNS)}, {', '.join(columns)}) "
            f"VALUES ({marks})")


class _Batch:
    """Rows of the three view tables, written ``_BATCH`` structures at a time."""

    def __init__(self, dst: sqlite3.Connection, insert: str, columns: list[str]):
        self.dst, self.insert, self.columns = dst, insert, columns
        self.rows: list[tuple] = []
        self.docs: list[tuple] = []
        self.members: list[tuple] = []

    def add(self, sid: int, row: dict[str, Any]) -> None:
        self.rows.append((sid, *element_masks(row["elements"]),
                          *(_column_value(COLUMNS[c][1], row.get(c)) for c in self.columns)))
        self.docs.append((sid, orjson.dumps(row, option=orjson.OPT_UTC_Z)))
        for name in LIST_FIELDS:
            if name != "elements":
                self.members.extend((sid, name, v) for v in set(row[name]))
        if len(self.rows) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        self.dst.executemany(self.insert, self.rows)
        self.dst.executemany("INSERT INTO structure_docs VALUES (?, ?)", self.docs)
        self.dst.executemany("INSERT INTO structure_lists VALUES (?, ?, ?)", self.members)
        self.rows, self.docs, self.members = [], [], []


def build_view(reader: PhaseReader, target: Path) -> int:
    """Write the view of the entries and phases ``reader`` yields into a new file ``target``;
    returns the number of structures."""
    columns = _ordered_columns()
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        dst.execute("PRAGMA journal_mode=OFF")
        dst.execute("PRAGMA synchronous=OFF")
        batch = _Batch(dst, _create_tables(dst, columns), columns)
        n = 0
        dst.execute("BEGIN")
        for n, row in enumerate(served_rows(reader), start=1):
            batch.add(n, row)
        batch.flush()
        for c in _INDEXED:
            dst.execute(f"CREATE {'UNIQUE ' if c == 'id' else ''}INDEX ix_{c} ON structures ({c})")
        dst.execute("CREATE INDEX ix_lists ON structure_lists (field, value, sid)")
        dst.execute("COMMIT")
        dst.execute("ANALYZE")
    finally:
        dst.close()
    return n


def open_view(url: str, refresh_s: float) -> SQLiteView:
    """The served view of the database at a ``sqlite:///path`` URL (the registry's opener)."""
    return SQLiteView(open_reader(url), refresh_s=refresh_s)


class SQLiteView(RefreshingView):
    """The current view file of one gnomon SQLite database, rebuilt when the database changes."""

    def __init__(self, reader: SQLitePhaseReader, refresh_s: float = 30.0):
        self.reader = reader
        self.source = reader.path
        self._dir = Path(tempfile.mkdtemp(prefix="gnomon-serve-"))
        self._local = threading.local()
        self._generation = 0
        self._previous: Path | None = None
        self._start_watching(refresh_s)
        try:
            self._current: tuple[Path, int] = self._build()
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise

    def collection(self, config: ServerConfig,
                   time_limit_s: float = QUERY_TIME_LIMIT_S) -> SQLiteStructureCollection:
        return SQLiteStructureCollection(self, config, time_limit_s)

    @property
    def path(self) -> Path:
        return self._current[0]

    @property
    def size(self) -> int:
        return self._current[1]

    def _build(self) -> tuple[Path, int]:
        """A new view file, complete, or nothing (a failed build leaves no file behind); a
        full disk is raised as DiskFull naming the view's file."""
        self._generation += 1
        target = self._dir / f"view-{self._generation}.sqlite"
        start = time.perf_counter()
        try:
            size = build_view(self.reader, target)
        except BaseException as exc:
            target.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise DiskFull(target) from exc
            raise
        log.info("OPTIMADE view of %s: %d structures in %.1f s", self.source, size,
                 time.perf_counter() - start)
        return target, size

    def _rebuild(self) -> None:
        """Build a new view and switch to it in one assignment (path and size together). The
        file before the previous one is deleted: a request that read the previous path just
        before the switch may still be opening it."""
        built = self._build()
        older, self._previous, self._current = self._previous, self._current[0], built
        if older is not None:
            older.unlink(missing_ok=True)  # connections still open keep their file

    def connection(self) -> sqlite3.Connection:
        """This thread's read-only connection to the current view."""
        return self.connected()[0]

    def connected(self) -> tuple[sqlite3.Connection, Path]:
        """This thread's read-only connection to the current view, and that view's file: one
        request asks everything of the one view, even if a rebuild switches views meanwhile."""
        path = self.path
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.path != path:
            if conn is not None:
                conn.close()
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            conn.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)
            self._local.conn, self._local.path = conn, path
        return conn, path

    @contextmanager
    def deadline(self, when: float) -> Iterator[None]:
        """Stop this thread's queries (SQLite raises "interrupted") once ``time.monotonic()``
        passes ``when``, within the block."""
        self._local.deadline = when
        try:
            yield
        finally:
            self._local.deadline = None

    def _past_deadline(self) -> int:
        deadline = getattr(self._local, "deadline", None)
        return int(deadline is not None and time.monotonic() > deadline)

    def close(self) -> None:
        self.reader.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class SQLiteStructureCollection(ReadOnlyCollection):
    """``/structures`` over a :class:`SQLiteView`."""

    def __init__(self, view: SQLiteView, config: ServerConfig,
                 time_limit_s: float = QUERY_TIME_LIMIT_S):
        mapper = StructureMapper(config)
        super().__init__(StructureResource, mapper, SQLiteTransformer(mapper=mapper), config,
                         time_limit_s)
        self.view = view
        self._counts: OrderedDict[tuple, int] = OrderedDict()
        self._counts_lock = threading.Lock()

    def __len__(self) -> int:
        return self.view.size

    def count(self, **kwargs: Any) -> int:
        with self.time_limited(self.deadline()):
            return self._count(kwargs.get("filter") or Sql("1"))

    @contextmanager
    def time_limited(self, deadline: float) -> Iterator[None]:
        with self.view.deadline(deadline):
            try:
                yield
            except sqlite3.OperationalError as exc:
                if "interrupted" in str(exc):
                    raise self.over_time() from None
                raise

    def _count(self, where: Sql,
               connected: tuple[sqlite3.Connection, Path] | None = None) -> int:
        """How many structures match: a scan of the view (~10-30 ms at 10^5), so remembered
        per view file (a view never changes; a rebuilt one is a new file) for the last
        :data:`_COUNTS_KEPT` filters, which is what paging through a result re-asks."""
        conn, path = connected or self.view.connected()
        key = (str(path), where.text, where.params)
        with self._counts_lock:
            if key in self._counts:
                self._counts.move_to_end(key)
                return self._counts[key]
        n = conn.execute(
            f"SELECT COUNT(*) FROM structures WHERE {where.text}", where.params).fetchone()[0]
        with self._counts_lock:
            self._counts[key] = n
            while len(self._counts) > _COUNTS_KEPT:
                self._counts.popitem(last=False)
        return n

    def _run_db_query(self, criteria: dict[str, Any], single_entry: bool = False):
        self.view.maybe_refresh()
        where: Sql = criteria.get("filter") or Sql("1")
        # rows were written in id order, so the row number orders by id without a sort
        order = ", ".join(f"{'sid' if f == 'id' else COLUMNS[f][0]} {'ASC' if d > 0 else 'DESC'}"
                          for f, d in self.order(criteria))
        limit = int(criteria.get("limit", self.config.page_limit))
        skip = int(criteria.get("skip", 0) or 0)
        conn, path = self.view.connected()
        sids = [sid for (sid,) in conn.execute(
            f"SELECT sid FROM structures WHERE {where.text} ORDER BY {order} LIMIT ? OFFSET ?",
            (*where.params, limit, skip),
        )]
        docs = dict(conn.execute(
            f"SELECT sid, doc FROM structure_docs WHERE sid IN ({','.join('?' * len(sids))})", sids
        )) if sids else {}
        results = [self.public(orjson.loads(docs[sid])) for sid in sids]
        if single_entry:
            return results, len(results), False
        total = self._count(where, (conn, path))
        return results, total, skip + len(results) < total
