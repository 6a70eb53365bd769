"""The meaning of a filter, computed in Python over the stored rows: the third opinion the
fuzzer holds the SQLite and MongoDB answers to.

It evaluates the predicate gnomon's transformer makes (so it checks each backend's compilation
of the predicate, and the predicate's three-valued logic, not the transformer's decisions of
what a filter means, which tests/serve/test_hostile_corpus.py pins case by case).
"""

from __future__ import annotations

import operator
from typing import Any

from gnomon.storage import open_repository
from gnomon.storage.optimade.predicate import (
    And,
    Compare,
    Const,
    Fuzzy,
    Has,
    Known,
    Mismatch,
    Not,
    Or,
    Predicate,
)
from gnomon.storage.optimade.resources import structure_row

_OPS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}


def stored_rows(url: str) -> list[dict[str, Any]]:
    """The structure rows of a database, from its stored entries and phases."""
    repo = open_repository(url)
    try:
        phases = {p["id"]: p for p in repo.find("phases")}
        rows = [structure_row(e, phases.get(e["id"])) for e in repo.find("entries")]
    finally:
        repo.close()
    return [r for r in rows if r is not None]


def evaluate(predicate: Predicate, row: dict[str, Any]) -> bool | None:
    """TRUE, FALSE or UNKNOWN (None) of ``predicate`` on one row, by Kleene's logic."""
    match predicate:
        case Const(value):
            return value
        case Not(part):
            value = evaluate(part, row)
            return None if value is None else not value
        case And(parts):
            values = [evaluate(p, row) for p in parts]
            return False if False in values else None if None in values else True
        case Or(parts):
            values = [evaluate(p, row) for p in parts]
            return True if True in values else None if None in values else False
        case Known(field, known):
            return (row.get(field) is not None) == known
        case Mismatch(field):
            return None if row.get(field) is None else False
        case Compare(field, op, value):
            have = row.get(field)
            return None if have is None else _OPS[op](have, value)
        case Fuzzy(field, mode, value):
            have = row.get(field)
            if have is None:
                return None
            return {"CONTAINS": value in have, "STARTS": have.startswith(value),
                    "ENDS": have.endswith(value)}[mode]
        case Has(field, mode, values):
            have = row[field]
            if mode == "ALL":
                return all(v in have for v in values)
            if mode == "ANY":
                return any(v in have for v in values)
            return bool(have) and all(h in values for h in have)
    raise TypeError(f"not a predicate: {predicate!r}")


def matching_ids(predicate: Predicate, rows: list[dict[str, Any]]) -> list[str]:
    return sorted(r["id"] for r in rows if evaluate(predicate, r) is True)
