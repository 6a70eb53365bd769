"""OPTIMADE filters parsed by optimade's own grammar with Lark's LALR parser, within bounds.

optimade's LarkParser runs the grammar through Lark's Earley parser, which took ~20 ms per
filter, and ~0.8 s of CPU on a 4,000-character filter it cannot parse (a cheap way to hold a
core). The grammar is LALR(1), and Lark's LALR parser builds the same tree in under a
millisecond and refuses a bad filter as fast; tests/serve/test_filter_parser.py and the fuzzer
(tests/serve/test_fuzz_filters.py) check that the two accept the same filters and give equal
trees, so what is accepted stays optimade's.

Before the tree reaches a transformer, the filter's nesting and number of comparisons are
checked against :mod:`gnomon.storage.optimade.limits` (400 over them), and a filter that does
not parse gets a one-line 400 naming the place and what was expected there.
"""

from __future__ import annotations

import functools

from lark import Lark, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput
from optimade.exceptions import BadRequest
from optimade.filterparser import LarkParser
from optimade.filterparser.lark_parser import AVAILABLE_PARSERS

from gnomon.storage.optimade.limits import MAX_FILTER_COMPARISONS, MAX_FILTER_DEPTH


def grammar_path() -> str:
    """optimade's grammar file of the newest OPTIMADE version it ships."""
    return AVAILABLE_PARSERS[max(AVAILABLE_PARSERS)]["default"]


class FastFilterParser:
    """A drop-in for ``LarkParser.parse``: optimade's grammar under Lark's LALR parser, with
    gnomon's bounds; parse trees are cached (clients repeat filters while paging).

    ``earley`` is accepted for the drop-in's signature (``ReadOnlyCollection`` passes
    optimade's parser) and not used on requests."""

    def __init__(self, earley: LarkParser | None = None):
        with open(grammar_path()) as fh:
            self.lalr = Lark(fh, parser="lalr", maybe_placeholders=False)
        self._cached = functools.lru_cache(maxsize=512)(self._parse)

    def parse(self, filter_: str) -> Tree:
        check_nesting(filter_)
        tree = self._cached(filter_)
        check_complexity(tree)
        return tree

    def _parse(self, filter_: str) -> Tree:
        try:
            return self.lalr.parse(filter_)
        except LarkError as exc:
            raise BadRequest(detail=parse_error(filter_, exc)) from None


def parse_error(filter_: str, exc: LarkError) -> str:
    """One line for a filter that does not parse: where, what was found, what was expected."""
    if isinstance(exc, UnexpectedEOF):
        return "the filter ends too early: " + _expected(exc.expected)
    if isinstance(exc, UnexpectedCharacters):
        found = repr(filter_[exc.pos_in_stream]) if exc.pos_in_stream < len(filter_) else "end"
        return f"cannot read the filter at character {exc.column}: unexpected {found}"
    if isinstance(exc, UnexpectedInput):
        token = getattr(exc, "token", None)
        if token is not None and token.type == "$END":
            return "the filter ends too early: " + _expected(getattr(exc, "expected", ()))
        place = f"at character {exc.column}" if exc.column and exc.column > 0 else "here"
        found = repr(str(token)[:40]) if token is not None else "input"
        return (f"cannot parse the filter {place}: unexpected {found}; "
                + _expected(getattr(exc, "expected", ())))
    return "cannot parse the filter"


_TERMINALS = {"RPAR": "')'", "LPAR": "'('", "COMMA": "','", "COLON": "':'", "DOT": "'.'",
              "_AND": "AND", "_OR": "OR", "ESCAPED_STRING": "a string", "SIGNED_INT": "a number",
              "SIGNED_FLOAT": "a number", "IDENTIFIER": "a property", "OPERATOR": "an operator",
              "NESTED_IDENTIFIER": "a property", "$END": "the end of the filter"}


def _expected(names) -> str:
    shown = sorted({_TERMINALS.get(str(n), str(n)) for n in names or ()})[:8]
    return f"expected one of {', '.join(shown)}" if shown else "the filter is incomplete"


def check_nesting(filter_: str) -> None:
    """400 for a filter nested deeper than :data:`MAX_FILTER_DEPTH` parentheses, before anything
    parses it (200 levels overflowed Python's stack in the transformer)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in filter_:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    if deepest > MAX_FILTER_DEPTH:
        raise BadRequest(detail=f"the filter nests {deepest} levels of parentheses; at most "
                                f"{MAX_FILTER_DEPTH} are accepted")


def check_complexity(tree: Tree) -> None:
    """400 for a filter of more than :data:`MAX_FILTER_COMPARISONS` comparisons."""
    comparisons = sum(1 for t in tree.iter_subtrees() if t.data == "comparison")
    if comparisons > MAX_FILTER_COMPARISONS:
        raise BadRequest(detail=f"the filter makes {comparisons} comparisons; at most "
                                f"{MAX_FILTER_COMPARISONS} are accepted")
