"""The served-content stamp of a gnomon SQLite database: a random value, new on every change to
its entries or phases.

``gnomon serve`` keeps the view it builds from a database (:mod:`.view`) on disk across
restarts and shares it between its workers (:mod:`.view_store`), keyed by this stamp: a view
built while the database held stamp S is the view of every database that holds S. The stamp
must therefore change with *every* change to what the view is built from, whoever makes it.
It is kept by SQLite triggers on ``entries`` and ``phases`` (insert, update, delete), so a
write by gnomon, by an older gnomon, or by hand in the ``sqlite3`` shell moves it in the same
transaction as the change itself. It is random rather than a counter so that a database
restored from a backup, or copied, holds the stamp of exactly the content it holds: a counter
would come back to a number that a later, different history had already reached.

Writes to the other tables (candidates, calculations, ...) leave it alone, so a campaign
generating candidates does not make a server rebuild its view. A database whose repository
has never been opened for writing by a gnomon with this module has no stamp: its view is then
built at every start, as before.
"""

from __future__ import annotations

import sqlite3

TABLE = "served_stamp"
#: the tables a served view is built from (see :mod:`gnomon.storage.sqlite.reader`)
SERVED_TABLES = ("entries", "phases")
_EVENTS = ("INSERT", "UPDATE", "DELETE")
_NEW = "randomblob(16)"


def _trigger(table: str, event: str) -> str:
    return f"{TABLE}_{table}_{event.lower()}"


def ensure_stamp(conn: sqlite3.Connection) -> None:
    """Create the stamp and its triggers where missing (inside the caller's write transaction,
    after the served tables exist). A trigger found missing means changes may have gone
    unstamped (a table dropped and made again drops its triggers), so the stamp is renewed."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} "
                 f"(id INTEGER PRIMARY KEY CHECK (id = 1), stamp BLOB NOT NULL)")
    existing = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN (?, ?)",
        SERVED_TABLES)}
    missing = [(t, e) for t in SERVED_TABLES for e in _EVENTS if _trigger(t, e) not in existing]
    for table, event in missing:
        conn.execute(f"CREATE TRIGGER {_trigger(table, event)} AFTER {event} ON {table} "
                     f"BEGIN UPDATE {TABLE} SET stamp = {_NEW} WHERE id = 1; END")
    if missing:
        conn.execute(f"INSERT INTO {TABLE} (id, stamp) VALUES (1, {_NEW}) "
                     f"ON CONFLICT(id) DO UPDATE SET stamp = excluded.stamp")


def read_stamp(conn: sqlite3.Connection) -> str | None:
    """The database's stamp as hex, or None where it has none (made or last written by a
    gnomon without stamps)."""
    try:
        row = conn.execute(f"SELECT hex(stamp) FROM {TABLE} WHERE id = 1").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return row[0].lower() if row else None
