"""OPTIMADE filters as parameterised SQL over the serve view (:mod:`gnomon.storage.sqlite.view`).

What a filter means is decided once, for both backends, by
:class:`~gnomon.storage.optimade.predicate.PredicateTransformer`; this module compiles its
predicate into one SQL boolean expression and its parameters. SQL's own three-valued logic
(NULL for unknown) is the predicate's, so the compilation is direct. User values only ever
travel as ``?`` parameters; the only names that reach SQL text are columns from a fixed table
(:data:`COLUMNS`) and list fields from
:data:`~gnomon.storage.optimade.resources.LIST_FIELDS`, never the filter's own spelling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymatgen.core.periodic_table import Element

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
    PredicateTransformer,
)
from gnomon.storage.optimade.resources import SCALAR_FIELDS

#: backend field -> (SQL column of the ``structures`` table, OPTIMADE type)
COLUMNS: dict[str, tuple[str, str]] = {name: (name, kind) for name, kind in SCALAR_FIELDS.items()}
COLUMNS["nstructure_features"] = ("nstructure_features", "integer")

#: ``elements`` as bit masks over atomic numbers (60 per column: SQLite integers are signed
#: 64-bit), so HAS ALL/ANY/ONLY on elements is integer arithmetic on a narrow row
MASK_COLUMNS = ("elements_mask0", "elements_mask1")
_BITS_PER_MASK = 60


@functools.lru_cache(maxsize=256)
def _element_bit(symbol: str) -> tuple[int, int] | None:
    """(mask column, bit) of an element symbol, or None for a string that is not one."""
    if not Element.is_valid_symbol(symbol) or Element(symbol).symbol != symbol:
        return None  # not an element, or an isotope's alias (D, T) no structure lists
    z = Element(symbol).Z - 1
    return z // _BITS_PER_MASK, 1 << (z % _BITS_PER_MASK)


def element_masks(elements: list[str]) -> tuple[int, ...]:
    masks = [0] * len(MASK_COLUMNS)
    for el in elements:
        place = _element_bit(el)
        if place is None:
            raise ValueError(f"{el!r} is not an element")
        masks[place[0]] |= place[1]
    return tuple(masks)


def _masks_of(values: list[Any]) -> tuple[tuple[int, ...], bool]:
    """Masks of the element symbols among ``values``, and whether every value was one."""
    masks = [0] * len(MASK_COLUMNS)
    complete = True
    for v in values:
        place = _element_bit(v) if isinstance(v, str) else None
        if place is None:
            complete = False
            continue
        masks[place[0]] |= place[1]
    return tuple(masks), complete


#: columns where one value matches few rows, so that an equality is best answered by their index
SELECTIVE_COLUMNS = frozenset({"id", "chemical_formula_reduced", "chemical_formula_descriptive",
                               "source", "calculation_id"})

#: numeric columns whose indexes also carry the element masks and ``nelements``
#: (:func:`gnomon.storage.sqlite.view.build_view`): a range on one of them
#: (``e_above_hull<=0.05``) matches a third of a database, and fetching each of its rows from
#: the table costs more than a scan (40 ms against 8 at 10^5 rows), but a filter that reads
#: nothing else (with ``elements HAS ALL`` and ``nelements``) is answered from the index alone
#: (3 ms)
COVERED_COLUMNS = ("last_modified", "nelements", "nsites", "e_above_hull",
                   "formation_energy_per_atom", "decomposition_energy", "energy_per_atom", "round")
_COVER = (*MASK_COLUMNS, "nelements")


def index_keys(column: str) -> tuple[str, ...]:
    """The keys of the view's index on ``column``: the masks and ``nelements`` after a
    covered column, which is what lets :func:`covering_column` leave its range unprefixed."""
    return tuple(dict.fromkeys((column, *_COVER))) if column in COVERED_COLUMNS else (column,)

_SQL_OPS = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass(frozen=True)
class Sql:
    """A fragment of SQL and the parameters its ``?`` marks stand for, in order."""

    text: str
    params: tuple[Any, ...] = field(default_factory=tuple)


def _join(word: str, parts: list[Sql]) -> Sql:
    if len(parts) == 1:
        return parts[0]
    return Sql("(" + f" {word} ".join(p.text for p in parts) + ")",
               tuple(v for p in parts for v in p.params))


_CONSTANTS = {True: Sql("1"), False: Sql("0"), None: Sql("NULL")}


def to_sql(predicate: Predicate, covering: str | None = None) -> Sql:
    """The predicate as a boolean SQL expression over one ``structures`` row; a range on
    ``covering`` (see :func:`covering_column`) may use that column's index."""
    match predicate:
        case Const(value):
            return _CONSTANTS[value]
        case Not(part):
            inner = to_sql(part, covering)
            return Sql(f"(NOT {inner.text})", inner.params)
        case And(parts):
            return _join("AND", [to_sql(p, covering) for p in parts])
        case Or(parts):
            return _join("OR", [to_sql(p, covering) for p in parts])
        case Known(name, known):
            return Sql(f"({COLUMNS[name][0]} IS {'NOT ' if known else ''}NULL)")
        case Mismatch(name):
            return Sql(f"(CASE WHEN {COLUMNS[name][0]} IS NULL THEN NULL ELSE 0 END)")
        case Compare(name, op, value):
            column = COLUMNS[name][0]
            return _compare(column, op, value, indexed=column == covering)
        case Fuzzy(name, mode, value):
            return _fuzzy(COLUMNS[name][0], mode, value)
        case Has(name, mode, values):
            return _elements(mode, values) if name == "elements" else _members(name, mode, values)
    raise TypeError(f"not a predicate: {predicate!r}")


def covering_column(predicate: Predicate) -> str | None:
    """The one column whose covering index answers the whole predicate (it reads only that
    column, the element masks, ``nelements`` and list fields, which go by ``sid``), if any."""
    read = _columns_read(predicate)
    if read is None:
        return None
    ranged = [c for c in COVERED_COLUMNS if c in read and read <= set(index_keys(c))]
    return ranged[0] if ranged else None


def _columns_read(predicate: Predicate) -> set[str] | None:
    """The ``structures`` columns the predicate reads (None: one no index carries)."""
    match predicate:
        case Const():
            return set()
        case Not(part):
            return _columns_read(part)
        case And(parts) | Or(parts):
            read: set[str] = set()
            for part in parts:
                more = _columns_read(part)
                if more is None:
                    return None
                read |= more
            return read
        case Has("elements", _, _):
            return set(MASK_COLUMNS) | {"nelements"}
        case Has():
            return set()
        case Known(name) | Mismatch(name) | Compare(name) | Fuzzy(name):
            return {COLUMNS[name][0]}
    return None


def _compare(column: str, operator: str, value: Any, indexed: bool = False) -> Sql:
    if isinstance(value, datetime):
        value = value.timestamp()  # the view stores last_modified as epoch seconds
    elif isinstance(value, bool):
        value = int(value)
    if not indexed and not (operator == "=" and column in SELECTIVE_COLUMNS):
        # SQLite would walk an index for a range or a common value and then fetch most of
        # the table row by row (170 ms at 10^5 rows); a scan of the narrow table is ~10 ms.
        # Unary + keeps the index out of the plan (SQLite's documented way).
        column = f"+{column}"
    return Sql(f"({column} {_SQL_OPS[operator]} ?)", (value,))


def _fuzzy(column: str, mode: str, value: str) -> Sql:
    if mode == "CONTAINS":
        return Sql(f"(instr({column}, ?) > 0)", (value,))
    if mode == "STARTS":
        return Sql(f"(substr({column}, 1, length(?)) = ?)", (value, value))
    return Sql(f"(length({column}) >= length(?) AND substr({column}, -length(?)) = ?)",
               (value, value, value))


def _elements(mode: str, members: tuple[Any, ...]) -> Sql:
    masks, complete = _masks_of(list(members))
    pairs = list(zip(MASK_COLUMNS, masks, strict=True))
    if mode == "ALL":
        if not complete:
            return Sql("0")  # a value that is no element is in no structure's elements
        return _join("AND", [Sql(f"(({col} & ?) = ?)", (m, m)) for col, m in pairs if m])
    if mode == "ANY":
        parts = [Sql(f"(({col} & ?) != 0)", (m,)) for col, m in pairs if m]
        return _join("OR", parts) if parts else Sql("0")
    parts = [Sql(f"(({col} & ?) = 0)", (~m,)) for col, m in pairs]  # ONLY
    return _join("AND", [*parts, Sql("(nelements > 0)")])


def _members(name: str, mode: str, members: tuple[Any, ...]) -> Sql:
    values = tuple(dict.fromkeys(members))
    marks = ",".join("?" * len(values))
    if mode == "ALL":
        return Sql(f"(sid IN (SELECT sid FROM structure_lists WHERE field = ? AND value IN "
                   f"({marks}) GROUP BY sid HAVING COUNT(DISTINCT value) = ?))",
                   (name, *values, len(values)))
    if mode == "ANY":
        return Sql(f"(sid IN (SELECT sid FROM structure_lists WHERE field = ? "
                   f"AND value IN ({marks})))", (name, *values))
    return Sql(  # ONLY
        f"(sid IN (SELECT sid FROM structure_lists WHERE field = ?) AND sid NOT IN "
        f"(SELECT sid FROM structure_lists WHERE field = ? AND value NOT IN ({marks})))",
        (name, name, *values),
    )


class SQLiteTransformer(PredicateTransformer):
    """Lark tree of an OPTIMADE filter -> :class:`Sql` over the ``structures`` view table."""

    def compile(self, predicate: Predicate) -> Sql:
        return to_sql(predicate, covering_column(predicate))
