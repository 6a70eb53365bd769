"""How the served view answers a filter: a range on one numeric field together with elements
(the field's commonest query, "the phases of Li-O within 50 meV of the hull") is answered from
that field's index alone; a filter that reads another column is not sent through an index it
would have to leave for every row. Whatever the plan, the answer is the same."""

from __future__ import annotations

import sqlite3

import pytest
from optimade.filterparser import LarkParser
from optimade.server.mappers import StructureMapper
from serve_helpers import fill

from gnomon.serve.app import server_config
from gnomon.storage.sqlite.filter import Sql, SQLiteTransformer
from gnomon.storage.sqlite.reader import SQLitePhaseReader
from gnomon.storage.sqlite.view import build_view

COVERED = 'elements HAS ALL "Li","O" AND _gnomon_e_above_hull<=0.05'
MIXED = 'elements HAS ALL "Li","O" AND _gnomon_e_above_hull<=0.05 AND nsites<6'


@pytest.fixture(scope="module")
def view(tmp_path_factory) -> sqlite3.Connection:
    folder = tmp_path_factory.mktemp("plans")
    db = folder / "gnomon.db"
    fill(f"sqlite:///{db}")
    target = folder / "view.sqlite"
    build_view(SQLitePhaseReader(db), target)
    return sqlite3.connect(f"file:{target}?mode=ro", uri=True)


def _sql(filter_: str) -> Sql:
    transformer = SQLiteTransformer(mapper=StructureMapper(server_config()))
    return transformer.transform(LarkParser(version=(1, 1, 0)).parse(filter_))


def _plan(conn: sqlite3.Connection, where: Sql) -> str:
    rows = conn.execute(f"EXPLAIN QUERY PLAN SELECT COUNT(*) FROM structures WHERE {where.text}",
                        where.params).fetchall()
    return " ".join(row[-1] for row in rows)


def _count(conn: sqlite3.Connection, where: Sql) -> int:
    return conn.execute(f"SELECT COUNT(*) FROM structures WHERE {where.text}",
                        where.params).fetchone()[0]


def test_a_range_with_elements_is_answered_from_the_fields_index_alone(view):
    assert "COVERING INDEX ix_e_above_hull" in _plan(view, _sql(COVERED))


def test_a_filter_reading_another_column_scans_rather_than_leaving_the_index(view):
    plan = _plan(view, _sql(MIXED))
    assert "ix_e_above_hull" not in plan and "SCAN structures" in plan


@pytest.mark.parametrize("filter_", [COVERED, MIXED, "_gnomon_e_above_hull>0.01",
                                     'elements HAS ANY "Mn","Fe" AND nelements>=2',
                                     "NOT _gnomon_e_above_hull<0.02 OR nelements=1"])
def test_the_plan_never_changes_the_answer(view, filter_):
    where = _sql(filter_)
    text = where.text
    for column in ("e_above_hull", "nelements"):
        text = text.replace(f"+{column}", column).replace(column, f"+{column}")
    unindexed = Sql(text, where.params)  # SQLite's documented way to keep an index out
    assert _count(view, where) == _count(view, unindexed)
    assert _count(view, where) > 0 or filter_ == MIXED

