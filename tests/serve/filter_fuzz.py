"""OPTIMADE filters for fuzzing ``gnomon serve``: sentences of optimade's own Lark grammar
(``hypothesis.extra.lark.from_lark``), and the same sentences broken (truncated, tokens swapped,
dropped, doubled, junk put in), plus the checks every answer must pass.

Shared by tests/serve/test_fuzz_filters.py (a fixed seed, a bounded count) and bench/fuzz.py
(as many filters as asked for). The grammar's terminals get values that reach the served data
(its fields, elements, formulas, sources) and values that test the edges (64-bit and larger
integers, 1e999, SQL and regular-expression syntax, control characters, unicode); keywords get
spaces around them so that a sentence lexes as the grammar meant.
"""

from __future__ import annotations

import re

import hypothesis.strategies as st
from hypothesis.extra.lark import from_lark
from lark import Lark
from lark.exceptions import LarkError

from gnomon.storage.optimade.filter_parser import grammar_path
from gnomon.storage.optimade.resources import PROVIDER_FIELD_NAMES

GRAMMAR_TEXT = open(grammar_path()).read()
GRAMMAR = Lark(GRAMMAR_TEXT, parser="lalr", maybe_placeholders=False)

FIELDS = (
    "id", "type", "last_modified", "elements", "nelements", "elements_ratios", "nsites",
    "chemical_formula_descriptive", "chemical_formula_reduced", "chemical_formula_anonymous",
    "chemical_formula_hill", "dimension_types", "nperiodic_dimensions", "lattice_vectors",
    "cartesian_site_positions", "species", "species_at_sites", "structure_features",
    "immutable_id", "space_group_it_number", "assemblies",
    *(f"_gnomon_{name}" for name in PROVIDER_FIELD_NAMES),
    "_gnomon_no_such_field", "_exmpl_band_gap", "_mp_stability", "_zzz_unknown_prefix",
    "no_such_field", "references", "structures", "_",
)

STRINGS = (
    "Li", "O", "Mn", "Na", "Cl", "Fe", "D", "Xx", "li", "Li2O", "ClNa", "LiO2", "AB", "A2B",
    "ABC", "test-pbe", "demo", "reference", "relax-1", "relax-", "calc-3", "table", "",
    "structures", "true", "false", "TRUE", "1", "0.05", "2026-01-01T00:00:00Z", "2020-01-01",
    "1999-12-31T23:59:59+14:00", "garbage", "0001-01-01T00:00:00+14:00", "9999-12-31",
    "' OR '1'='1", "x'); DROP TABLE structures; --", '" OR 1=1 --', "1; SELECT 1", "%", "_",
    "*", ".*", "a.b", "^", "$", "(", "[", "\\", "\\d+", '"', "{$ne: null}", "$where",
    "é", "😀", "\u202e", "\ufeff", "\t\n", "\x01", "\x1f", "\x7f", "\x00", "<script>",
    "x" * 300,
)

REACHABLE = (
    "id", "elements", "nelements", "nsites", "chemical_formula_reduced",
    "chemical_formula_anonymous", "chemical_formula_descriptive", "species_at_sites",
    "structure_features", "dimension_types", "last_modified",
    *(f"_gnomon_{name}" for name in PROVIDER_FIELD_NAMES),
)

INTEGERS = ("0", "1", "2", "3", "4", "5", "6", "8", "-1", "+2", "007", "9223372036854775807",
            "9223372036854775808", "-9223372036854775809", "99999999999999999999999999")
FLOATS = ("0.05", "0.0", "-0.5", "0.1", "2.5", ".5", "1.", "1e3", "1E-3", "-0.0", "1e999",
          "-1e999", "1e-999", "1.7976931348623157e308")
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
KEYWORDS = ("NOT", "_AND", "_OR", "IS", "KNOWN", "UNKNOWN", "CONTAINS", "STARTS", "ENDS", "WITH",
            "LENGTH", "HAS", "ALL", "ONLY", "ANY", "TRUE", "FALSE")


def quoted(text: str) -> str:
    """``text`` as an OPTIMADE string token."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_TEXT = st.one_of(st.sampled_from(STRINGS), st.text(max_size=12))

EXPLICIT = {
    # the fields rows hold and filters reach, twice as often as the rest
    "IDENTIFIER": st.sampled_from(FIELDS + REACHABLE * 2),
    "NESTED_IDENTIFIER": st.sampled_from(("x", "doi", "id", "b2")),
    "ESCAPED_STRING": _TEXT.map(quoted),
    "SIGNED_INT": st.one_of(st.sampled_from(INTEGERS), st.integers(-20, 20).map(str)),
    "SIGNED_FLOAT": st.one_of(st.sampled_from(FLOATS),
                              st.floats(-5, 5, allow_nan=False).map(repr)),
    "OPERATOR": st.sampled_from(OPERATORS),
    "WS": st.sampled_from((" ", "  ", "\t", "\n")),
    # punctuation as constants: hypothesis would draw each from its regular expression
    **{name: st.just(text) for name, text in (("COMMA", ","), ("COLON", ":"), ("LPAR", "("),
                                              ("RPAR", ")"), ("DOT", "."))},
    **{kw: st.sampled_from((f" {kw.strip('_')} ", f"\n{kw.strip('_')}\t")) for kw in KEYWORDS},
}

#: the grammar less its OPTIONAL parts (constant first, nested properties, ':' lists, an
#: operator inside HAS or a list, TRUE/FALSE): a sub-language whose sentences mostly reach the
#: data; ``from_lark`` picks every alternative alike, and the optional parts are most of them
_CORE_EDITS = (
    ("comparison: constant_first_comparison | property_first_comparison",
     "comparison: property_first_comparison"),
    ('property: IDENTIFIER ( "." NESTED_IDENTIFIER )*', "property: IDENTIFIER"),
    ("| set_zip_op_rhs\n", ""),
    ('value_list: [ OPERATOR ] value ( "," [ OPERATOR ] value )*',
     'value_list: value ( "," value )*'),
    ("set_op_rhs: HAS ( [ OPERATOR ] value", "set_op_rhs: HAS ( value"),
    ("value: string | bool | number | property", "value: string | number"),
)


def _generator_grammar(edits: tuple[tuple[str, str], ...] = ()) -> Lark:
    """The grammar less ``edits``, and without its ignored whitespace: ``from_lark`` would
    draw whether to put whitespace after every symbol, half its time; the keywords' strategies
    bring their own."""
    text = GRAMMAR_TEXT
    for old, new in (*edits, ("%ignore WS", "")):
        assert old in text, f"optimade's grammar changed: {old!r} is not in it"
        text = text.replace(old, new)
    return Lark(text, parser="lalr", maybe_placeholders=False)


def _sentences(grammar: Lark):
    terminals, _, _ = grammar.grammar.compile(["expression"], ())
    names = {t.name for t in terminals}
    explicit = {name: strategy for name, strategy in EXPLICIT.items() if name in names}
    return from_lark(grammar, start="expression", explicit=explicit).filter(
        lambda s: len(s) < 3000)


#: sentences of the filter grammar, three in four from its core (a few do not parse, e.g. a
#: property named like a keyword)
_CORE, _FULL = _sentences(_generator_grammar(_CORE_EDITS)), _sentences(_generator_grammar())
sentences = st.sampled_from((_CORE, _CORE, _CORE, _FULL)).flatmap(lambda grammar: grammar)

JUNK = ("(", ")", '"', ",", ":", ".", "=", "<", "!", "AND", "NOT", "HAS", "\\", "\x00", "é", "'",
        ";", "--", "1e", "+", " ")


def tokens(text: str) -> list[str]:
    """``text`` split into the grammar's tokens (and the spaces between them), or into
    characters where it does not lex."""
    try:
        out, end = [], 0
        for tok in GRAMMAR.lex(text):
            out += [text[end:tok.start_pos], str(tok)] if tok.start_pos > end else [str(tok)]
            end = tok.end_pos
        return out + ([text[end:]] if end < len(text) else [])
    except LarkError:
        return list(text)


@st.composite
def broken(draw, base=sentences) -> str:
    """A sentence with one thing done wrong to it."""
    text = draw(base)
    parts = tokens(text) or [""]
    i = draw(st.integers(0, len(parts) - 1))
    how = draw(st.sampled_from(("truncate", "drop", "swap", "double", "insert", "chars")))
    if how == "truncate":
        return text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    if how == "drop":
        return "".join(parts[:i] + parts[i + 1:])
    if how == "swap" and len(parts) > 1:
        j = draw(st.integers(0, len(parts) - 1))
        parts[i], parts[j] = parts[j], parts[i]
        return "".join(parts)
    if how == "double":
        return "".join(parts[: i + 1] + parts[i:])
    if how == "insert":
        return "".join(parts[:i] + [draw(st.sampled_from(JUNK))] + parts[i:])
    return text + draw(st.text(min_size=1, max_size=4))


#: Python exception names a body must never carry
_EXCEPTION_NAMES = re.compile(
    r"\b(?:[A-Z][A-Za-z]*(?:Error|Exception|Warning)|Traceback|VisitError|KeyError|"
    r"StopIteration|RecursionError|File \"/)"
)


def answer_problems(status: int, body: str) -> list[str]:
    """What is wrong with one answer of ``/structures`` (an empty list if nothing)."""
    import json

    problems = []
    if status not in (200, 400, 403, 501):
        problems.append(f"status {status}")
    try:
        doc = json.loads(body)
    except ValueError:
        return [*problems, "the body is not JSON"]
    if status != 200:
        errors = doc.get("errors") or []
        if not errors or not all(e.get("status") == str(status) and e.get("detail")
                                 for e in errors):
            problems.append("no OPTIMADE error document with the status and a detail")
        text = json.dumps(errors)
        if _EXCEPTION_NAMES.search(text):
            problems.append(f"Python in the error: {_EXCEPTION_NAMES.search(text).group(0)}")
    elif "data" not in doc or "meta" not in doc:
        problems.append("a 200 without data and meta")
    return problems


def outcome(status: int, body: str) -> tuple:
    """What two backends must agree on: the status, and for a 200 the ids and the count."""
    import json

    if status != 200:
        return (status,)
    doc = json.loads(body)
    return (200, tuple(sorted(d["id"] for d in doc["data"])), doc["meta"].get("data_returned"))
