"""OPTIMADE filters parsed by optimade's own grammar, with Lark's LALR parser first.

optimade's LarkParser runs the grammar through Lark's Earley parser, which took ~20 ms per
filter (more than the query it becomes on 10^5 structures). The grammar is also LALR(1), and
Lark's LALR parser builds the same tree in under a millisecond; a filter it cannot parse goes
to optimade's Earley parser, which either parses it or raises optimade's 400 error, so what is
accepted and what is refused stays optimade's. tests/serve/test_filter_parser.py checks the two
give equal trees.
"""

from __future__ import annotations

import functools

from lark import Lark, Tree
from lark.exceptions import LarkError
from optimade.filterparser import LarkParser
from optimade.filterparser.lark_parser import AVAILABLE_PARSERS


class FastFilterParser:
    """A drop-in for ``LarkParser.parse``: LALR first, optimade's Earley parser otherwise;
    parse trees are cached (clients repeat filters while paging)."""

    def __init__(self, earley: LarkParser | None = None):
        # the bound method, taken now: callers may put this parser's parse in its place
        self._earley_parse = (earley or LarkParser()).parse
        version = max(AVAILABLE_PARSERS)
        with open(AVAILABLE_PARSERS[version]["default"]) as fh:
            self.lalr = Lark(fh, parser="lalr", maybe_placeholders=False)
        self.parse = functools.lru_cache(maxsize=512)(self._parse)

    def _parse(self, filter_: str) -> Tree:
        try:
            return self.lalr.parse(filter_)
        except LarkError:
            return self._earley_parse(filter_)
