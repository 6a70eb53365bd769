"""An OPTIMADE filter as one predicate over served rows: the meaning both backends compile.

The SQLite view and the MongoDB view once each had their own transformer, and a fuzzer found
them answering the same filter differently (an unknown property under NOT, HAS on a number, a
regex character in CONTAINS, a timestamp compared with a number). Now one transformer,
:class:`PredicateTransformer`, decides what a filter means and what is refused; each backend only
compiles the resulting tree (:mod:`gnomon.storage.sqlite.filter`,
:mod:`gnomon.storage.mongodb.filter`).

The meaning, for one row (a structure):

- a comparison is TRUE, FALSE or UNKNOWN; it is UNKNOWN where the property has no value (a
  gnomon field left empty, an OPTIMADE field gnomon does not store, another provider's field).
  NOT, AND and OR follow three-valued (Kleene) logic, as SQL does; a row matches when TRUE.
  So ``NOT _exmpl_x=1`` matches nothing, and ``NOT _gnomon_round=1`` leaves out imports
  (which have no round).
- a value of a type the property never has (``nsites="abc"``, ``last_modified>3``) is FALSE
  where the property has a value (and UNKNOWN where it has none): it is no error.
- ``IS KNOWN`` / ``IS UNKNOWN`` are always TRUE or FALSE.
- list properties (``elements``, ``species_at_sites``, ``structure_features``,
  ``dimension_types``) take HAS, HAS ALL, HAS ANY, HAS ONLY (ONLY needs a non-empty list) and
  LENGTH; they are never unknown.
- integers beyond 64 bits are compared as floats; strings unescape ``\\"`` and ``\\\\`` (other
  backslashes are kept); CONTAINS, STARTS and ENDS compare characters, never patterns.

Refused with 400 (the client's error): a property gnomon's own prefix does not define, a
timestamp that does not parse, HAS or LENGTH on a property that is not a list, ``<`` on a
boolean, a NUL character in a string. Refused with 501 (valid OPTIMADE that gnomon does not
implement): comparing two properties or two constants, ``:`` (correlated lists), nested
properties and relationships (``references.doi``), an operator inside HAS or a value list,
TRUE/FALSE values (the grammar drops which one was written), HAS or comparisons on lists that
are served but not indexed (``lattice_vectors``, ``species``, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lark import Token, v_args
from optimade.exceptions import BadRequest
from optimade.filtertransformers.base_transformer import BaseTransformer, Quantity

from gnomon.storage.optimade.resources import (
    CONSTANT_FIELDS,
    LENGTH_FIELDS,
    LIST_FIELDS,
    OPAQUE_LIST_FIELDS,
    SCALAR_FIELDS,
)

INT64_MAX = 2**63 - 1
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
REVERSED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "=", "!=": "!="}
INVERSE = {"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


# -- the predicate tree ------------------------------------------------------------------------
@dataclass(frozen=True)
class Const:
    """TRUE, FALSE, or UNKNOWN (None) for every row."""

    value: bool | None


@dataclass(frozen=True)
class Compare:
    """``field op value``; ``value`` has the field's type (a datetime for a timestamp)."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Fuzzy:
    """``field CONTAINS|STARTS|ENDS value`` on a string field, character by character."""

    field: str
    mode: str
    value: str


@dataclass(frozen=True)
class Mismatch:
    """A comparison whose value the field can never equal or order against: FALSE where the
    field has a value, UNKNOWN where it has none."""

    field: str


@dataclass(frozen=True)
class Known:
    """``field IS KNOWN`` (``known``) or ``IS UNKNOWN`` on a scalar field that may be empty."""

    field: str
    known: bool


@dataclass(frozen=True)
class Has:
    """``field HAS ALL|ANY|ONLY values`` on a list field (never unknown)."""

    field: str
    mode: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    part: Predicate


@dataclass(frozen=True)
class And:
    parts: tuple[Predicate, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Predicate, ...]


Predicate = Const | Compare | Fuzzy | Mismatch | Known | Has | Not | And | Or
UNKNOWN = Const(None)


class Unknown(str):
    """A property no row has a value for (another provider's, or one gnomon does not store)."""


# -- values ------------------------------------------------------------------------------------
def unescape(token: str) -> str:
    """The text of an OPTIMADE string token: ``\\"`` and ``\\\\`` unescaped, other backslashes
    kept as written."""
    inner = token[1:-1]
    out: list[str] = []
    i = 0
    while i < len(inner):
        char = inner[i]
        if char == "\\" and i + 1 < len(inner) and inner[i + 1] in '"\\':
            out.append(inner[i + 1])
            i += 2
            continue
        out.append(char)
        i += 1
    text = "".join(out)
    if "\x00" in text:
        raise BadRequest(detail="a string in the filter contains a NUL character")
    return text


def bounded_number(value: int | float) -> int | float:
    """An integer beyond 64 bits as a float (no backend stores such an integer; as a float it
    still orders correctly against every stored number)."""
    if isinstance(value, int) and abs(value) > INT64_MAX:
        return float(value)
    return value


def timestamp(value: str) -> datetime:
    """An RFC 3339 filter value as an aware UTC datetime; 400 if it is none."""
    try:
        stamp = datetime.fromisoformat(value)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadRequest(detail=f"{value!r} is not an RFC 3339 timestamp") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_boolean(value: Any) -> bool | None:
    """A value a boolean field can equal (1/0, "true"/"false"), or None."""
    if _is_number(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def compare(field: str, op: str, value: Any, name: str | None = None) -> Predicate:
    """``field op value`` on a scalar field, by the field's type (``name``: the field as the
    filter spelled it, for messages)."""
    kind = SCALAR_FIELDS[field]
    if kind == "boolean":
        if op not in ("=", "!="):
            raise BadRequest(detail=f"{name or field} is a boolean: compare it with = or != "
                                    "(1 or 0)")
        flag = _as_boolean(value)
        return Mismatch(field) if flag is None else Compare(field, op, flag)
    if kind == "timestamp":
        return Compare(field, op, timestamp(value)) if isinstance(value, str) else Mismatch(field)
    if kind == "string":
        return Compare(field, op, value) if isinstance(value, str) else Mismatch(field)
    if not _is_number(value) or (isinstance(value, float) and math.isnan(value)):
        return Mismatch(field)
    return Compare(field, op, value)


def constant_compare(constant: Any, op: str, value: Any) -> Const:
    """A comparison on a field every row has the same value of (``type``)."""
    if type(constant) is not type(value):
        return Const(False)
    return Const({"=": constant == value, "!=": constant != value, "<": constant < value,
                  "<=": constant <= value, ">": constant > value, ">=": constant >= value}[op])


# -- the transformer ---------------------------------------------------------------------------
class PredicateTransformer(BaseTransformer):
    """Lark tree of an OPTIMADE filter -> :data:`Predicate`. Backends subclass it and compile
    the predicate in :meth:`compile`."""

    def postprocess(self, query: Any) -> Any:
        return self.compile(query)

    def compile(self, predicate: Predicate) -> Any:
        return predicate

    # -- structure ------------------------------------------------------------------------
    def filter(self, arg: list) -> Predicate:
        return arg[0] if arg else Const(True)  # a blank filter is no filter

    def expression(self, arg: list) -> Predicate:
        return arg[0] if len(arg) == 1 else Or(tuple(arg))

    def expression_clause(self, arg: list) -> Predicate:
        return arg[0] if len(arg) == 1 else And(tuple(arg))

    def expression_phrase(self, arg: list) -> Predicate:
        return arg[0] if len(arg) == 1 else Not(arg[1])

    @v_args(inline=True)
    def comparison(self, value: Predicate) -> Predicate:
        return value

    # -- values ---------------------------------------------------------------------------
    @v_args(inline=True)
    def string(self, token: Token) -> str:
        return unescape(str(token))

    @v_args(inline=True)
    def number(self, token: Token) -> int | float:
        return bounded_number(int(token) if token.type == "SIGNED_INT" else float(token))

    @v_args(inline=True)
    def signed_int(self, token: Token) -> int | float:
        return bounded_number(int(token))

    def bool(self, arg: list) -> Any:
        raise NotImplementedError("TRUE and FALSE are not supported: compare a boolean field "
                                  "with 1 or 0 (for example _gnomon_is_stable=1)")

    @v_args(inline=True)
    def not_implemented_string(self, value: Any) -> Any:
        raise NotImplementedError("comparing two constants is not supported")

    def value_list(self, arg: list) -> list[Any]:
        if any(isinstance(v, Token) and v.type == "OPERATOR" for v in arg):
            raise NotImplementedError("an operator inside a value list is not supported")
        return list(arg)

    def value_zip(self, arg: list) -> Any:
        raise NotImplementedError("correlated list queries (the ':' operator) are not supported")

    value_zip_list = set_zip_op_rhs = property_zip_addon = value_zip

    def property(self, args: list) -> Quantity | Unknown:
        name, nested = str(args[0]), args[1:]
        if self.mapper and name in self.mapper.RELATIONSHIP_ENTRY_TYPES:
            raise NotImplementedError(f"filtering on relationships ({name}.…) is not supported")
        if name.startswith("_") and name.split("_")[1] not in self.mapper.SUPPORTED_PREFIXES:
            return Unknown(name)  # another provider's field (optimade warns about odd prefixes)
        quantity = super().property([args[0]])  # 400 for a name nobody defines
        if nested:
            raise NotImplementedError(f"nested properties ({name}.{nested[0]}) are not supported")
        return quantity

    # -- right-hand sides: (kind, ...) tuples the comparison rules read ---------------------
    @v_args(inline=True)
    def value_op_rhs(self, operator: Token, value: Any) -> tuple:
        return ("cmp", str(operator), value)

    def known_op_rhs(self, arg: list) -> tuple:
        return ("known", str(arg[1]) == "KNOWN")

    def fuzzy_string_op_rhs(self, arg: list) -> tuple:
        return ("fuzzy", str(arg[0]), arg[-1])

    def set_op_rhs(self, arg: list) -> tuple:
        if len(arg) == 2:  # HAS value
            return ("set", "ANY", [arg[1]])
        if isinstance(arg[1], Token) and arg[1].type == "OPERATOR":
            raise NotImplementedError(f"HAS with an operator ({arg[1]}) is not supported")
        return ("set", str(arg[1]), arg[2])

    def length_op_rhs(self, arg: list) -> tuple:
        return ("length", "=" if len(arg) == 2 else str(arg[1]), arg[-1])

    # -- comparisons ----------------------------------------------------------------------
    def constant_first_comparison(self, arg: list) -> Predicate:
        constant, operator, prop = arg
        if not isinstance(prop, (Quantity, Unknown)):
            raise NotImplementedError("comparing two constants is not supported")
        return self.property_first_comparison([prop, ("cmp", REVERSED[str(operator)], constant)])

    def property_first_comparison(self, arg: list) -> Predicate:
        quantity, rhs = arg
        kind = rhs[0]
        values = rhs[2] if kind == "set" else [rhs[-1]] if kind != "known" else []
        if any(isinstance(v, (Quantity, Unknown)) for v in values):
            raise NotImplementedError("comparing two properties is not supported")
        if isinstance(quantity, Unknown) or quantity.backend_field not in _SERVED:
            return Const(not rhs[1]) if kind == "known" else UNKNOWN
        field = quantity.backend_field
        if kind == "known":
            if field in SCALAR_FIELDS:
                return Known(field, rhs[1])
            return Const(rhs[1])  # lists and constants are in every row
        if field in CONSTANT_FIELDS:
            return self._on_constant(field, kind, rhs)
        if kind == "set":
            return self._has(quantity, field, rhs[1], rhs[2])
        if kind == "length":
            return self._length(quantity, field, rhs[1], rhs[2])
        if field not in SCALAR_FIELDS:
            raise NotImplementedError(f"{quantity.name} is a list: filter it with HAS or LENGTH")
        if kind == "fuzzy":
            value = rhs[2]
            if SCALAR_FIELDS[field] != "string" or not isinstance(value, str):
                return Mismatch(field)
            return Fuzzy(field, rhs[1], value)
        return compare(field, rhs[1], rhs[2], quantity.name)

    def _on_constant(self, field: str, kind: str, rhs: tuple) -> Predicate:
        constant = CONSTANT_FIELDS[field]
        if kind == "cmp":
            return constant_compare(constant, rhs[1], rhs[2])
        if kind == "fuzzy":
            value = rhs[2]
            if not isinstance(value, str):
                return Const(False)
            test = {"CONTAINS": constant.__contains__, "STARTS": constant.startswith,
                    "ENDS": constant.endswith}[rhs[1]]
            return Const(test(value))
        raise BadRequest(detail=f"{field} is not a list: HAS and LENGTH apply to lists")

    def _has(self, quantity: Quantity, field: str, mode: str, values: list[Any]) -> Predicate:
        if field in LIST_FIELDS:
            return Has(field, mode, tuple(values))
        if field in OPAQUE_LIST_FIELDS:
            raise NotImplementedError(f"HAS on {quantity.name} is not supported (lists that "
                                      f"take HAS: {', '.join(LIST_FIELDS)})")
        raise BadRequest(detail=f"{quantity.name} is not a list: HAS applies to lists "
                                f"({', '.join(LIST_FIELDS)})")

    def _length(self, quantity: Quantity, field: str, op: str, value: Any) -> Predicate:
        column = LENGTH_FIELDS.get(field)
        if column is not None:
            return Compare(column, op, value)
        if field in OPAQUE_LIST_FIELDS:
            raise NotImplementedError(f"LENGTH of {quantity.name} is not supported")
        raise BadRequest(detail=f"{quantity.name} is not a list: LENGTH applies to lists")

    def __default__(self, data, children, meta):
        raise NotImplementedError(f"the filter construct {data} is not supported")


#: every backend field a row holds (the rest of OPTIMADE's structure fields are unknown here)
_SERVED = frozenset({*SCALAR_FIELDS, *LIST_FIELDS, *LENGTH_FIELDS, *OPAQUE_LIST_FIELDS,
                     *CONSTANT_FIELDS})
