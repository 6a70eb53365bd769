"""OPTIMADE filters as MongoDB queries over the serve view (:mod:`gnomon.storage.mongodb.view`).

What a filter means is decided once, for both backends, by
:class:`~gnomon.storage.optimade.predicate.PredicateTransformer`. Its logic has three values
(a comparison on a property with no value is UNKNOWN, and stays so under NOT), and a MongoDB
query has two, so each part of the predicate compiles to a pair of queries: the rows where it
is TRUE and the rows where it is FALSE (the rest are UNKNOWN). NOT swaps the pair, AND and OR
combine them as Kleene logic does. The query served is the TRUE one.

Values are data, never query syntax: CONTAINS/STARTS/ENDS escape their text into the regular
expression, and field names come from gnomon's fixed tables, never the filter's spelling.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from gnomon.storage.optimade.predicate import (
    INVERSE,
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
    PredicateTransformer,
)

Query = dict[str, Any]

_OPS = {"=": "$eq", "!=": "$ne", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
ALL: Query = {"_id": {"$exists": True}}
NONE: Query = {"_id": {"$exists": False}}


def _and(parts: list[Query]) -> Query:
    if any(p is NONE for p in parts):
        return NONE
    parts = [p for p in parts if p is not ALL]
    return ALL if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


def _or(parts: list[Query]) -> Query:
    if any(p is ALL for p in parts):
        return ALL
    parts = [p for p in parts if p is not NONE]
    return NONE if not parts else parts[0] if len(parts) == 1 else {"$or": parts}


def _known(field: str) -> Query:
    return {field: {"$ne": None}}  # neither null nor missing


def _compare(field: str, op: str, value: Any) -> Query:
    if op == "!=":  # $ne also matches null and missing fields
        return {"$and": [{field: {"$ne": value}}, _known(field)]}
    return {field: {_OPS[op]: value}}


def _pattern(mode: str, text: str) -> str:
    escaped = re.escape(text)
    if mode == "STARTS":
        return f"^{escaped}"
    if mode == "ENDS":
        return f"{escaped}$(?!\\n)"  # "$" alone also matches before a final newline
    return escaped


def _has(field: str, mode: str, values: list[Any]) -> Query:
    if mode == "ALL":
        return {field: {"$all": values}}
    if mode == "ANY":
        return {field: {"$in": values}}
    return {"$and": [{field: {"$not": {"$elemMatch": {"$nin": values}}}},  # ONLY
                     {f"{field}.0": {"$exists": True}}]}


def true_false(predicate: Predicate) -> tuple[Query, Query]:
    """The queries of the rows where ``predicate`` is TRUE and where it is FALSE."""
    match predicate:
        case Const(value):
            return {True: (ALL, NONE), False: (NONE, ALL), None: (NONE, NONE)}[value]
        case Not(part):
            true, false = true_false(part)
            return false, true
        case And(parts):
            pairs = [true_false(p) for p in parts]
            return _and([t for t, _ in pairs]), _or([f for _, f in pairs])
        case Or(parts):
            pairs = [true_false(p) for p in parts]
            return _or([t for t, _ in pairs]), _and([f for _, f in pairs])
        case Known(field, known):
            present, absent = _known(field), {field: None}
            return (present, absent) if known else (absent, present)
        case Mismatch(field):
            return NONE, _known(field)
        case Compare(field, op, value):
            return _compare(field, op, value), _compare(field, INVERSE[op], value)
        case Fuzzy(field, mode, value):
            regex = {"$regex": _pattern(mode, value)}
            return {field: regex}, {"$and": [{field: {"$type": "string"}},
                                             {field: {"$not": regex}}]}
        case Has(field, mode, values):
            true = _has(field, mode, list(values))
            return true, {"$nor": [true]}
    raise TypeError(f"not a predicate: {predicate!r}")


def to_mongo(predicate: Predicate) -> Query:
    """The MongoDB query of the rows where ``predicate`` is TRUE."""
    true, _ = true_false(predicate)
    return {} if true is ALL else copy.deepcopy(true)  # ALL and NONE are shared


class MongoFilterTransformer(PredicateTransformer):
    """Lark tree of an OPTIMADE filter -> MongoDB query over the view collection."""

    def compile(self, predicate: Predicate) -> Query:
        return to_mongo(predicate)
