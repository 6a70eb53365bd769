"""OPTIMADE structures over a gnomon SQLite database: the SQLite backend's serve view.

gnomon keeps an entry (with its structure) and its phase (with e_above_hull) in two tables,
as JSON documents plus a few indexed columns (:mod:`gnomon.storage.sqlite.repository`). A
filter such as ``elements HAS ALL "Li","O" AND _gnomon_e_above_hull<=0.05`` needs both, per
element, on 10^5 rows in well under 100 ms, so ``gnomon serve`` answers from a *view*: a
separate SQLite file (kept as described below), built from the database, with one row per
structure (:func:`gnomon.storage.optimade.resources.structure_row`), a column per scalar
field, a membership table for list fields (``structure_lists``: elements, species_at_sites,
...) and an index on each. The gnomon database itself is only read, through
:class:`~.reader.SQLitePhaseReader` (``mode=ro``), never written.

How the view stays current: at start the server takes the view of the database as it is then.
Afterwards, at most every ``refresh_s`` seconds a request asks the database whether its
entries or phases changed since (its served-content stamp, :mod:`.stamp`; SQLite's
``PRAGMA data_version`` for a database without one); if they did, a new view is made in a
background thread while the old one keeps answering, and the server switches to the new one
when it is complete. A new view is built from the one before it (:func:`build_view`): the rows
whose entry and phase are stored as they were are copied, only the changed ones made again,
so a campaign ingesting while the server runs is seen within ``refresh_s`` plus a build that
costs a read of the database and the changed rows (a full build of 10^5 structures, at the
first start, costs about a minute on a busy machine).

Where views live: finished views are kept in a :class:`~.view_store.ViewStore`, named by the
database's stamp, so a restart on a database that has not changed, and every worker of a
server after the first, takes the view already built instead of building it (a file link:
milliseconds), and a database that changed in any way gets a new view (built from the kept
view of the same database used last).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import sqlite3
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

from gnomon.storage.optimade import resources
from gnomon.storage.optimade.collection import ReadOnlyCollection
from gnomon.storage.optimade.limits import QUERY_TIME_LIMIT_S
from gnomon.storage.optimade.refresh import RefreshingView
from gnomon.storage.optimade.resources import LIST_FIELDS, served_row
from gnomon.storage.sqlite import filter as sql_filter
from gnomon.storage.sqlite.filter import (
    COLUMNS,
    MASK_COLUMNS,
    Sql,
    SQLiteTransformer,
    element_masks,
    index_keys,
)
from gnomon.storage.sqlite.reader import SQLitePhaseReader, open_reader
from gnomon.storage.sqlite.view_store import ViewRun, ViewStore

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
    ``structure_sources`` holds a fingerprint of the stored entry and phase each row was made
    from (and of each entry not served, with no row), for the next build to compare with.
    """
    col_defs = ", ".join(f"{c} {_SQL_TYPES[COLUMNS[c][1]]}" for c in columns)
    masks = ", ".join(f"{c} INTEGER NOT NULL" for c in MASK_COLUMNS)
    dst.execute(f"CREATE TABLE structures (sid INTEGER PRIMARY KEY, {masks}, {col_defs})")
    dst.execute("CREATE TABLE structure_docs (sid INTEGER PRIMARY KEY, doc BLOB NOT NULL)")
    dst.execute("CREATE TABLE structure_lists (sid INTEGER NOT NULL, field TEXT NOT NULL, value)")
    dst.execute("CREATE TABLE structure_sources (id TEXT PRIMARY KEY, fp BLOB NOT NULL, "
                "sid INTEGER)")
    marks = ", ".join("?" * (len(columns) + 1 + len(MASK_COLUMNS)))
    return (f"INSERT INTO structures (sid, {', '.join(MASK_COLUMNS)}, {', '.join(columns)}) "
            f"VALUES ({marks})")


def _fingerprint(entry_doc: bytes, phase_doc: bytes | None) -> bytes:
    """What a row is made from, in 16 bytes: its entry's and its phase's stored documents."""
    digest = hashlib.blake2b(entry_doc, digest_size=16)
    digest.update(b"\x00" if phase_doc is None else b"\x01" + phase_doc)
    return digest.digest()


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


def build_view(reader: SQLitePhaseReader, target: Path, base: Path | None = None) -> int:
    """Write the view of the entries and phases ``reader`` holds into a new file ``target``;
    returns the number of structures.

    Built incrementally from ``base``, an earlier view (of the same layout): a row whose
    entry and phase are stored exactly as when ``base`` was built (same fingerprint) is copied
    from it, in SQL, instead of being parsed and made again; the rest are made. The file is
    the one a build from nothing writes. A ``base`` that cannot be read is a build from
    nothing."""
    columns = _ordered_columns()
    dst = sqlite3.connect(target.resolve().as_uri(), uri=True, isolation_level=None)
    try:
        dst.execute("PRAGMA journal_mode=OFF")
        dst.execute("PRAGMA synchronous=OFF")
        batch = _Batch(dst, _create_tables(dst, columns), columns)
        earlier = _earlier_rows(dst, base)
        sources: list[tuple[str, bytes, int | None]] = []
        copied: list[tuple[int, int]] = []  # (sid in base, sid here)
        n = 0
        dst.execute("BEGIN")
        for entry_id, entry_doc, phase_doc in reader.stored_rows():
            fp = _fingerprint(entry_doc, phase_doc)
            before = earlier.get(entry_id)
            if before is not None and before[0] == fp:
                sid = None if before[1] is None else n + 1
                if sid is not None:
                    copied.append((before[1], sid))
            else:
                row = served_row(orjson.loads(entry_doc),
                                 orjson.loads(phase_doc) if phase_doc else None)
                sid = None if row is None else n + 1
                if row is not None:
                    batch.add(sid, row)
            n = sid or n
            sources.append((entry_id, fp, sid))
        batch.flush()
        if copied:
            _copy_rows(dst, copied, columns)
        dst.executemany("INSERT INTO structure_sources VALUES (?, ?, ?)", sources)
        for c in _INDEXED:
            unique = "UNIQUE " if c == "id" else ""
            dst.execute(f"CREATE {unique}INDEX ix_{c} ON structures ({', '.join(index_keys(c))})")
        dst.execute("CREATE INDEX ix_lists ON structure_lists (field, value, sid)")
        dst.execute("CREATE TABLE view_meta (size INTEGER NOT NULL, source TEXT NOT NULL)")
        dst.execute("INSERT INTO view_meta VALUES (?, ?)", (n, str(reader.path.resolve())))
        dst.execute("COMMIT")
        if base is not None:
            with contextlib.suppress(sqlite3.OperationalError):  # not attached
                dst.execute("DETACH DATABASE base")
            log.info("view of %s: %d structures copied from the earlier view, %d made",
                     reader.path, len(copied), n - len(copied))
        dst.execute("ANALYZE")
    finally:
        dst.close()
    return n


def _earlier_rows(dst: sqlite3.Connection,
                  base: Path | None) -> dict[str, tuple[bytes, int | None]]:
    """The fingerprint and row (None: not served) of each entry in the earlier view ``base``,
    attached to ``dst`` as ``base``; empty without one, or for one that cannot be read (a
    kept view deleted meanwhile: the build is then from nothing)."""
    if base is None:
        return {}
    try:
        dst.execute("ATTACH DATABASE ? AS base", (f"{base.resolve().as_uri()}?mode=ro",))
        return {i: (fp, sid) for i, fp, sid in
                dst.execute("SELECT id, fp, sid FROM base.structure_sources")}
    except sqlite3.Error as exc:
        log.info("building the view from nothing: the earlier view %s cannot be read (%s)",
                 base, exc)
        return {}


def _copy_rows(dst: sqlite3.Connection, copied: list[tuple[int, int]],
               columns: list[str]) -> None:
    """Copy rows of the attached earlier view into this one, renumbered (``copied``: pairs of
    its sid and the sid here)."""
    dst.execute("CREATE TEMP TABLE copied (old INTEGER PRIMARY KEY, sid INTEGER NOT NULL)")
    dst.executemany("INSERT INTO copied VALUES (?, ?)", copied)
    names = [*MASK_COLUMNS, *columns]
    dst.execute(f"INSERT INTO structures (sid, {', '.join(names)}) "
                f"SELECT c.sid, {', '.join(f's.{n}' for n in names)} "
                "FROM copied c JOIN base.structures s ON s.sid = c.old")
    dst.execute("INSERT INTO structure_docs (sid, doc) SELECT c.sid, d.doc "
                "FROM copied c JOIN base.structure_docs d ON d.sid = c.old")
    # the earlier view's lists have no index by sid: scan them once, look each sid up (CROSS
    # JOIN fixes that order in SQLite)
    dst.execute("INSERT INTO structure_lists (sid, field, value) "
                "SELECT c.sid, l.field, l.value FROM base.structure_lists l "
                "CROSS JOIN copied c ON c.old = l.sid")
    dst.execute("DROP TABLE temp.copied")


def view_meta(path: Path) -> tuple[int, str]:
    """The number of structures in the finished view file at ``path``, and the database it
    was built from."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT size, source FROM view_meta").fetchone()
    finally:
        conn.close()


@functools.cache
def view_format() -> str:
    """The name of the view's layout: a hash of the code that decides a view's tables and rows
    (this module, the row of a structure, the columns filters compile to). A kept view is taken
    only by code of the same layout, so a gnomon that changed any of it builds its own view
    instead of answering from another's, with no version to remember to bump."""
    digest = hashlib.sha256()
    for source in (__file__, resources.__file__, sql_filter.__file__):
        digest.update(Path(source).read_bytes())
    return f"sqlite-{digest.hexdigest()[:16]}"


def open_view(url: str, refresh_s: float) -> SQLiteView:
    """The served view of the database at a ``sqlite:///path`` URL (the registry's opener)."""
    return SQLiteView(open_reader(url), refresh_s=refresh_s)


class SQLiteView(RefreshingView):
    """The current view file of one gnomon SQLite database, replaced when the database changes.

    ``store``: where finished views are kept (default: :func:`~.view_store.default_root`)."""

    def __init__(self, reader: SQLitePhaseReader, refresh_s: float = 30.0,
                 store: ViewStore | None = None):
        self.reader = reader
        self.source = reader.path
        self.store = store if store is not None else ViewStore(view_format())
        try:
            self._run: ViewRun = self.store.open_run()
        except BaseException:
            reader.close()
            raise
        self._local = threading.local()
        self._previous: Path | None = None
        try:
            self._start_watching(refresh_s)
            # path, size and generation change together, in one assignment
            self._current: tuple[Path, int, int] = (*self._obtain(), 1)
        except BaseException:
            self._run.close()
            reader.close()
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

    @property
    def generation(self) -> int:
        """Which view answers: 1 at start, one more at each switch to a new view."""
        return self._current[2]

    def _obtain(self) -> tuple[Path, int]:
        """A view of the database as it is now, complete: the store's, or built (a failed
        build leaves no file behind; a full disk is raised as DiskFull naming the file)."""
        start = time.perf_counter()
        got = self._run.obtain(self.reader.stamp,
                               lambda target: build_view(self.reader, target, self._base()))
        size = view_meta(got.path)[0]
        how = "built" if got.built else "taken from the kept views"
        kept = "" if got.kept else " (not kept: the database has no stamp or changed meanwhile)"
        log.info("OPTIMADE view of %s: %d structures, %s in %.1f s%s", self.source, size, how,
                 time.perf_counter() - start, kept)
        return got.path, size

    def _base(self) -> Path | None:
        """The earlier view a new one is built from (:func:`build_view`): the one answering
        now, else the kept view of this database used last, if any."""
        current = getattr(self, "_current", None)
        if current is not None:
            return current[0]
        source = str(self.source.resolve())
        for path in self.store.kept():
            with contextlib.suppress(sqlite3.Error):
                if view_meta(path)[1] == source:
                    return path
        return None

    def _rebuild(self) -> None:
        """Take a view of the database now and switch to it in one assignment (path, size and
        generation together). The file before the previous one is deleted: a request that read the
        previous path just before the switch may still be opening it."""
        path, size = self._obtain()
        older, self._previous = self._previous, self._current[0]
        self._current = (path, size, self._current[2] + 1)
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
        self._run.close()


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
