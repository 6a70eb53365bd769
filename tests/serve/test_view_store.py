"""The served view kept across restarts and shared between processes: taken again exactly when
the database holds the content it was built from, built anew whenever the database changed in
any way (through gnomon or behind its back), built once when several ask at the same time."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import orjson
import pytest
from serve_helpers import SCHEME, fill, grid_structure

import gnomon.storage.sqlite.view as view_module
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import StorageError, open_repository
from gnomon.storage.sqlite.reader import SQLitePhaseReader
from gnomon.storage.sqlite.stamp import TABLE, read_stamp
from gnomon.storage.sqlite.view import SQLiteView, view_format
from gnomon.storage.sqlite.view_store import KEEP, ViewStore


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "gnomon.db"
    fill(f"sqlite:///{path}")
    return path


@pytest.fixture
def store(tmp_path) -> ViewStore:
    return ViewStore(view_format(), tmp_path / "store")


@pytest.fixture
def builds(monkeypatch) -> list[tuple[Path, Path | None]]:
    """The view files built (not taken from the store) while the test runs, each with the
    earlier view it was built from."""
    built: list[tuple[Path, Path | None]] = []
    original = view_module.build_view

    def counted(reader, target, base=None):
        built.append((target, base))
        return original(reader, target, base)

    monkeypatch.setattr(view_module, "build_view", counted)
    return built


def _open(db: Path, store: ViewStore, refresh_s: float = 30.0) -> SQLiteView:
    return SQLiteView(SQLitePhaseReader(db), refresh_s=refresh_s, store=store)


def _served(view: SQLiteView) -> dict[str, dict]:
    """Every structure document the view answers with, by id."""
    conn = sqlite3.connect(f"file:{view.path}?mode=ro", uri=True)
    try:
        docs = [orjson.loads(d) for (d,) in conn.execute("SELECT doc FROM structure_docs")]
    finally:
        conn.close()
    return {d["id"]: d for d in docs}


def _stored(db: Path) -> dict[str, float | None]:
    """What the database holds now: e_above_hull of every entry with a structure, by id."""
    repo = open_repository(f"sqlite:///{db}", read_only=True)
    try:
        phases = {p.id: p.e_above_hull for p in repo.phases()}
        return {e.id: phases.get(e.id) for e in repo.entries() if e.structure is not None}
    finally:
        repo.close()


def _views_kept(store: ViewStore) -> list[Path]:
    return sorted(store.root.glob("*.sqlite"))


def _stamp(db: Path) -> str | None:
    conn = sqlite3.connect(db)
    try:
        return read_stamp(conn)
    finally:
        conn.close()


def test_the_stamp_moves_with_every_change_to_entries_or_phases_and_only_then(db):
    repo = open_repository(f"sqlite:///{db}")
    try:
        first = _stamp(db)
        assert first is not None
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("INSERT INTO candidates (id, doc) VALUES ('c-1', '{}')")
        assert _stamp(db) == first  # not served: no new view for it
        seen = [first]
        HullEngine(repo).ingest([make_entry(None, -20.0, SCHEME, source="more",
                                            structure=grid_structure(["Li", "Li", "O", "O"]))])
        seen.append(_stamp(db))
        # by hand, behind gnomon's back: an update, a phase's number, a delete
        conn.execute("UPDATE phases SET doc = json_set(CAST(doc AS TEXT), '$.e_above_hull', 9.0) "
                     "WHERE rowid = (SELECT min(rowid) FROM phases)")
        seen.append(_stamp(db))
        conn.execute("DELETE FROM entries WHERE rowid = (SELECT max(rowid) FROM entries)")
        seen.append(_stamp(db))
        conn.close()
    finally:
        repo.close()
    assert len(set(seen)) == len(seen), seen


def test_a_stamp_whose_triggers_went_missing_is_renewed(db):
    before = _stamp(db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"DROP TRIGGER {TABLE}_phases_update")
    conn.execute("UPDATE phases SET doc = doc")  # unstamped
    conn.close()
    open_repository(f"sqlite:///{db}").close()  # a gnomon opening it to write
    assert _stamp(db) not in (None, before)
    conn = sqlite3.connect(db)
    names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    conn.close()
    assert f"{TABLE}_phases_update" in names


def test_a_restart_on_an_unchanged_database_takes_the_kept_view(db, store, builds):
    first = _open(db, store)
    try:
        answered = _served(first)
    finally:
        first.close()
    assert len(builds) == 1 and len(_views_kept(store)) == 1
    assert {i: d["e_above_hull"] for i, d in answered.items()} == pytest.approx(_stored(db))
    again = _open(db, store)
    try:
        assert len(builds) == 1  # taken, not built
        assert _served(again) == answered
        assert again.size == len(answered)
    finally:
        again.close()
    assert not list(store.root.glob("run-*"))  # each run's own directory went with it


@pytest.mark.parametrize("change", ["ingest", "by hand"])
def test_a_changed_database_never_gets_the_kept_view(db, store, builds, change):
    _open(db, store).close()
    if change == "ingest":
        repo = open_repository(f"sqlite:///{db}")
        HullEngine(repo).ingest([make_entry(None, -30.0, SCHEME, source="late",
                                            structure=grid_structure(["Li", "O", "O"]))])
        repo.close()
    else:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("UPDATE phases SET doc = json_set(CAST(doc AS TEXT), '$.e_above_hull', 7.5)")
        conn.close()
    view = _open(db, store)
    try:
        answered = {i: d["e_above_hull"] for i, d in _served(view).items()}
    finally:
        view.close()
    assert len(builds) == 2
    assert builds[1][1] is not None  # built from the kept view of the same database
    assert answered == pytest.approx(_stored(db))
    if change == "by hand":
        assert set(answered.values()) == {7.5}


def test_a_copy_of_the_database_is_served_its_own_content(db, tmp_path, store, builds):
    """A backup or copy holds the stamp of its own content: the kept view of that content is
    right for it, and the original, changed since, gets its own."""
    copy = tmp_path / "copy.db"
    shutil.copyfile(db, copy)
    before = _stored(db)
    _open(db, store).close()
    repo = open_repository(f"sqlite:///{db}")
    HullEngine(repo).ingest([make_entry(None, -25.0, SCHEME, source="after the copy",
                                        structure=grid_structure(["Mn", "O", "O"]))])
    repo.close()
    for path, expected, built in ((copy, before, 1), (db, _stored(db), 2)):
        view = _open(path, store)
        try:
            assert {i: d["e_above_hull"] for i, d in _served(view).items()} == \
                pytest.approx(expected)
        finally:
            view.close()
        assert len(builds) == built


def test_processes_asking_together_build_the_view_once(db, store, builds, monkeypatch):
    original = view_module.build_view

    def slow(reader, target, base=None):
        time.sleep(0.5)  # long enough for every other opener to find the build under way
        return original(reader, target, base)

    monkeypatch.setattr(view_module, "build_view", slow)
    views: list[SQLiteView] = []
    lock = threading.Lock()

    def open_one() -> None:
        view = _open(db, store)
        with lock:
            views.append(view)

    # each view takes the store's locks through its own file descriptors, as processes do
    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert len(views) == 3
        answers = [_served(v) for v in views]
        assert answers[0] == answers[1] == answers[2]
        assert len({v.path for v in views}) == 3  # each its own link, one file
        assert len({os.stat(v.path).st_ino for v in views}) == 1
    finally:
        for v in views:
            v.close()
    assert len(_views_kept(store)) == 1


def test_a_database_without_a_stamp_is_served_and_its_view_not_kept(db, store, builds):
    conn = sqlite3.connect(db, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute(f"DROP TABLE {TABLE}")  # as a database an older gnomon wrote
    conn.close()
    for _ in range(2):
        view = _open(db, store)
        try:
            assert {i: d["e_above_hull"] for i, d in _served(view).items()} == \
                pytest.approx(_stored(db))
        finally:
            view.close()
    assert len(builds) == 2 and not _views_kept(store)


def test_a_running_view_moves_to_the_changed_database_and_keeps_the_new_view(db, store, builds):
    view = _open(db, store, refresh_s=0.05)
    try:
        repo = open_repository(f"sqlite:///{db}")
        HullEngine(repo).ingest([make_entry(None, -22.0, SCHEME, source="while serving",
                                            structure=grid_structure(["Fe", "O"]))])
        repo.close()
        deadline = time.monotonic() + 60
        while view.generation == 1 and time.monotonic() < deadline:
            time.sleep(0.1)
            view.maybe_refresh()
        assert view.generation == 2
        assert {i: d["e_above_hull"] for i, d in _served(view).items()} == \
            pytest.approx(_stored(db))
    finally:
        view.close()
    _open(db, store).close()
    assert len(builds) == 2  # the restart took the view the running server built


def test_what_dead_processes_left_is_removed_and_old_views_are_dropped(tmp_path):
    store = ViewStore("fmt", tmp_path / "store")
    alive = store.open_run()
    dead = store.root / "run-dead"
    dead.mkdir()
    (dead / "lock").touch()  # nobody holds it
    (dead / "view-1.sqlite").touch()
    old = time.time() - 3600
    os.utime(dead, (old, old))
    for k in range(KEEP + 2):
        view = store.published(f"fmt-{k}")
        view.touch()
        os.utime(view, (old + k, old + k))
    store.prune()
    other = store.open_run()  # a new process sweeps first
    try:
        assert not dead.exists()
        assert alive.directory.exists()  # its lock is held
        assert sorted(p.name for p in store.root.glob("*.sqlite")) == \
            [f"fmt-{k}.sqlite" for k in range(2, KEEP + 2)]
    finally:
        other.close()
        alive.close()


def test_a_store_another_user_could_write_is_refused(tmp_path):
    root = tmp_path / "store"
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    with pytest.raises(StorageError, match="not a directory private to this user"):
        ViewStore("fmt", root).open_run()



def _tables(path: Path) -> dict[str, list]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(),
                              key=lambda row: tuple(str(v) for v in row))
                for table in ("structures", "structure_docs", "structure_lists",
                              "structure_sources", "view_meta")}
    finally:
        conn.close()


def test_a_view_built_from_an_earlier_one_is_the_view_built_from_nothing(db, tmp_path,
                                                                         monkeypatch):
    reader = SQLitePhaseReader(db)
    try:
        view_module.build_view(reader, tmp_path / "earlier.sqlite")
        repo = open_repository(f"sqlite:///{db}")
        HullEngine(repo).ingest([make_entry(None, -40.0, SCHEME, source="new",
                                            structure=grid_structure(["Li", "Mn", "O", "O"]))])
        repo.close()
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("UPDATE phases SET doc = json_set(CAST(doc AS TEXT), '$.e_above_hull', 3.0)"
                     " WHERE rowid = (SELECT min(rowid) FROM phases)")
        conn.execute("DELETE FROM entries WHERE rowid = (SELECT max(rowid) FROM entries "
                     "WHERE doc NOT LIKE '%reference%')")
        conn.close()
        made: list[str] = []
        original = view_module.served_row

        def counted(entry, phase):
            made.append(entry["id"])
            return original(entry, phase)

        monkeypatch.setattr(view_module, "served_row", counted)
        view_module.build_view(reader, tmp_path / "from-earlier.sqlite",
                               base=tmp_path / "earlier.sqlite")
        from_earlier = list(made)
        made.clear()
        view_module.build_view(reader, tmp_path / "from-nothing.sqlite")
    finally:
        reader.close()
    assert _tables(tmp_path / "from-earlier.sqlite") == _tables(tmp_path / "from-nothing.sqlite")
    # only what changed was made again: the new entry and the phases the hull recomputed
    assert 0 < len(from_earlier) < len(made) // 2, (len(from_earlier), len(made))


def test_an_earlier_view_that_cannot_be_read_means_a_build_from_nothing(db, tmp_path):
    reader = SQLitePhaseReader(db)
    try:
        (tmp_path / "broken.sqlite").write_bytes(b"not a view")
        for base in (tmp_path / "broken.sqlite", tmp_path / "absent.sqlite"):
            target = tmp_path / f"view-{base.stem}.sqlite"
            view_module.build_view(reader, target, base=base)
            assert _tables(target)["view_meta"][0][0] == len(_stored(db))
    finally:
        reader.close()
