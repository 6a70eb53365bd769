"""OPTIMADE filters as parameterised SQL over the serve view (:mod:`gnomon.storage.sqlite.view`).

The filter is parsed by ``optimade``'s Lark grammar; this transformer turns the tree into one
SQL boolean expression and its parameters. User values only ever travel as ``?`` parameters;
the only names that reach SQL text are columns from a fixed table (:data:`COLUMNS`) and list
fields from :data:`~gnomon.storage.optimade.resources.LIST_FIELDS`, never the filter's own spelling.

Semantics follow ``optimade``'s MongoTransformer, so both gnomon backends answer a filter
alike: a comparison with an unknown (null) value is false and stays false under NOT (SQL's
three-valued logic gives exactly that), comparisons across types (a string field with a
number) match nothing, and an unknown provider's property is treated as unknown.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lark import v_args
from optimade.exceptions import BadRequest
from optimade.filtertransformers.base_transformer import BaseTransformer, Quantity
from pymatgen.core.periodic_table import Element

from gnomon.storage.optimade.resources import LENGTH_FIELDS, LIST_FIELDS, SCALAR_FIELDS

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
    if not Element.is_valid_symbol(symbol):
        return None
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

_SQL_OPS = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_REVERSED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "=", "!=": "!="}


@dataclass(frozen=True)
class Sql:
    """A fragment of SQL and the parameters its ``?`` marks stand for, in order."""

    text: str
    params: tuple[Any, ...] = field(default_factory=tuple)

    def __and__(self, other: Sql) -> Sql:
        return Sql(f"({self.text} AND {other.text})", self.params + other.params)

    def __or__(self, other: Sql) -> Sql:
        return Sql(f"({self.text} OR {other.text})", self.params + other.params)

    def __invert__(self) -> Sql:
        return Sql(f"(NOT {self.text})", self.params)


NOTHING = Sql("0")


def timestamp_value(value: Any) -> float:
    """An RFC 3339 filter value as epoch seconds (how the view stores last_modified)."""
    try:
        stamp = datetime.fromisoformat(str(value))
    except ValueError:
        raise BadRequest(detail=f"{value!r} is not an RFC 3339 timestamp") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _python_type(kind: str) -> tuple[type, ...]:
    return {"string": (str,), "timestamp": (str,), "integer": (int, float), "float": (int, float),
            "boolean": (int, float, str)}[kind]


class SQLiteTransformer(BaseTransformer):
    """Lark tree of an OPTIMADE filter -> :class:`Sql` over the ``structures`` view table."""

    def postprocess(self, query: Any) -> Sql:
        if isinstance(query, Sql):
            return query
        raise BadRequest(detail="the filter is not a boolean expression")

    # -- structure of the expression -----------------------------------------------------
    def expression(self, arg: list) -> Sql:
        parts = [a for a in arg if isinstance(a, Sql)]
        out = parts[0]
        for part in parts[1:]:
            out = out | part
        return out

    def expression_clause(self, arg: list) -> Sql:
        parts = [a for a in arg if isinstance(a, Sql)]
        out = parts[0]
        for part in parts[1:]:
            out = out & part
        return out

    def expression_phrase(self, arg: list) -> Sql:
        if len(arg) == 1:
            return arg[0]
        return ~arg[1]

    # -- values ---------------------------------------------------------------------------
    def value_list(self, arg: list) -> list[Any]:
        for value in arg:
            if str(value) in _SQL_OPS:
                raise NotImplementedError(
                    f"an operator inside a value list ({value}) is not supported"
                )
        return list(arg)

    @v_args(inline=True)
    def value_op_rhs(self, operator, value):
        return ("cmp", str(operator), value)

    def known_op_rhs(self, arg):
        return ("known", str(arg[1]) == "KNOWN")

    def fuzzy_string_op_rhs(self, arg):
        kind = str(arg[0])
        value = arg[-1]
        return ("fuzzy", kind, value)

    def set_op_rhs(self, arg):
        if len(arg) == 2:  # HAS value
            return ("set", "ANY", [arg[1]])
        if str(arg[1]) in _SQL_OPS:
            raise NotImplementedError(f"HAS with an operator ({arg[1]}) is not supported")
        return ("set", str(arg[1]), arg[2])

    def length_op_rhs(self, arg):
        if len(arg) == 2:
            return ("length", "=", arg[1])
        return ("length", str(arg[1]), arg[2])

    def set_zip_op_rhs(self, arg):
        raise NotImplementedError("correlated list queries (the ':' operator) are not supported")

    def property_zip_addon(self, arg):
        raise NotImplementedError("correlated list queries (the ':' operator) are not supported")

    # -- comparisons ----------------------------------------------------------------------
    def constant_first_comparison(self, arg):
        constant, operator, prop = arg
        return self.property_first_comparison([prop, ("cmp", _REVERSED[str(operator)], constant)])

    def property_first_comparison(self, arg):
        quantity, rhs = arg
        kind = rhs[0]
        if isinstance(quantity, str):  # another provider's property: always unknown
            return Sql("1") if kind == "known" and not rhs[1] else NOTHING
        name = quantity.backend_field
        if kind == "set":
            return self._set(name, rhs[1], rhs[2])
        if kind == "length":
            return self._length(name, rhs[1], rhs[2])
        if name in LIST_FIELDS or name in LENGTH_FIELDS:
            if kind == "known":
                return Sql("1") if rhs[1] else NOTHING
            raise NotImplementedError(f"{quantity.name} is a list: filter it with HAS or LENGTH")
        if name not in COLUMNS:
            raise NotImplementedError(f"filtering on {quantity.name} is not supported")
        column, ctype = COLUMNS[name]
        if kind == "known":
            return Sql(f"({column} IS {'NOT ' if rhs[1] else ''}NULL)")
        if kind == "fuzzy":
            return self._fuzzy(column, ctype, rhs[1], rhs[2])
        return self._compare(column, ctype, rhs[1], rhs[2])

    def _operand(self, ctype: str, value: Any) -> tuple[str, tuple[Any, ...]] | None:
        """The right-hand side as SQL, or None when its type can never match the column's."""
        if isinstance(value, Quantity):
            other = COLUMNS.get(value.backend_field)
            if other is None:
                raise NotImplementedError(f"cannot compare with {value.name}")
            return other[0], ()
        if ctype == "timestamp":
            if not isinstance(value, str):
                return None
            return "?", (timestamp_value(value),)
        if ctype == "boolean" and isinstance(value, str):
            if value.lower() not in ("true", "false"):
                return None
            return "?", (int(value.lower() == "true"),)
        if isinstance(value, bool) or not isinstance(value, _python_type(ctype)):
            return None
        return "?", (str(value) if isinstance(value, str) else value,)

    def _compare(self, column: str, ctype: str, operator: str, value: Any) -> Sql:
        operand = self._operand(ctype, value)
        if operand is None:
            return NOTHING
        text, params = operand
        if not (operator == "=" and column in SELECTIVE_COLUMNS):
            # SQLite would walk an index for a range or a common value and then fetch most of
            # the table row by row (170 ms at 10^5 rows); a scan of the narrow table is ~10 ms.
            # Unary + keeps the index out of the plan (SQLite's documented way).
            column = f"+{column}"
        return Sql(f"({column} {_SQL_OPS[operator]} {text})", params)

    def _fuzzy(self, column: str, ctype: str, kind: str, value: Any) -> Sql:
        if ctype != "string" or not isinstance(value, str):
            return NOTHING
        value = str(value)
        if kind == "CONTAINS":
            return Sql(f"(instr({column}, ?) > 0)", (value,))
        if kind == "STARTS":
            return Sql(f"(substr({column}, 1, length(?)) = ?)", (value, value))
        return Sql(f"(length({column}) >= length(?) AND substr({column}, -length(?)) = ?)",
                   (value, value, value))

    def _elements(self, mode: str, members: list[Any]) -> Sql:
        masks, complete = _masks_of(members)
        pairs = list(zip(MASK_COLUMNS, masks, strict=True))
        if mode == "ALL":
            if not complete:
                return NOTHING  # a value that is no element is in no structure's elements
            parts = [Sql(f"(({col} & ?) = ?)", (m, m)) for col, m in pairs if m]
        elif mode == "ANY":
            parts = [Sql(f"(({col} & ?) != 0)", (m,)) for col, m in pairs if m]
            if not parts:
                return NOTHING
            out = parts[0]
            for part in parts[1:]:
                out = out | part
            return out
        elif mode == "ONLY":
            parts = [Sql(f"(({col} & ?) = 0)", (~m,)) for col, m in pairs]
            parts.append(Sql("(nelements > 0)"))
        else:
            raise BadRequest(detail=f"unknown set operator HAS {mode}")
        out = parts[0]
        for part in parts[1:]:
            out = out & part
        return out

    def _length(self, name: str, operator: str, value: Any) -> Sql:
        column = LENGTH_FIELDS.get(name)
        if column is None:
            raise NotImplementedError(f"LENGTH of {name} is not supported")
        return self._compare(COLUMNS[column][0], "integer", operator, value)

    def _set(self, name: str, mode: str, members: list[Any]) -> Sql:
        if name not in LIST_FIELDS:
            raise NotImplementedError(
                f"HAS on {name} is not supported (list fields: {', '.join(LIST_FIELDS)})"
            )
        if any(isinstance(v, Quantity) for v in members):
            raise NotImplementedError("HAS with a property on the right is not supported")
        if name == "elements":
            return self._elements(mode, members)
        member = "sid IN (SELECT sid FROM structure_lists WHERE field = ? AND value = ?)"
        if mode == "ALL":
            out = Sql(f"({member})", (name, members[0]))
            for v in members[1:]:
                out = out & Sql(f"({member})", (name, v))
            return out
        marks = ",".join("?" * len(members))
        if mode == "ANY":
            return Sql(f"(sid IN (SELECT sid FROM structure_lists WHERE field = ? "
                       f"AND value IN ({marks})))", (name, *members))
        if mode == "ONLY":
            return Sql(
                f"(sid IN (SELECT sid FROM structure_lists WHERE field = ?) AND sid NOT IN "
                f"(SELECT sid FROM structure_lists WHERE field = ? AND value NOT IN ({marks})))",
                (name, name, *members),
            )
        raise BadRequest(detail=f"unknown set operator HAS {mode}")

