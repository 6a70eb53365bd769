"""The LALR-first filter parser gives optimade's Earley parser's trees, and refuses what it
refuses."""

from __future__ import annotations

import pytest
from optimade.exceptions import BadRequest
from optimade.filterparser import LarkParser
from test_api import FILTERS, MALFORMED

from gnomon.storage.optimade.filter_parser import FastFilterParser

MORE = [
    'chemical_formula_descriptive CONTAINS "Li" AND NOT elements HAS ANY "Fe","Mn"',
    'elements HAS ONLY "Li","O" OR (nelements<=2 AND nsites>4)',
    "NOT (NOT nelements=2)",
    '"Li" = chemical_formula_reduced',
    "3 < nsites",
    "nsites >= 2 AND nsites <= 10 OR NOT nelements = 1 AND _gnomon_round != 2",
    "elements LENGTH >= 2",
    "_gnomon_e_above_hull IS KNOWN AND _exmpl_x IS UNKNOWN",
    'last_modified >= "2026-01-01T00:00:00Z"',
    'id = "abc" OR id ENDS WITH "12"',
    'elements:species_at_sites HAS "Li":"Li"',
    "nelements=-1.5e3",
    "a.b.c = 1",
]


FAST = FastFilterParser()
EARLEY = LarkParser()


@pytest.mark.parametrize("filter_", [*FILTERS, *MORE])
def test_same_tree_as_optimade(filter_):
    assert FAST.parse(filter_) == EARLEY.parse(filter_)


@pytest.mark.parametrize("filter_", MALFORMED)
def test_refuses_what_optimade_refuses(filter_):
    earley_refuses = True
    try:
        EARLEY.parse(filter_)
        earley_refuses = False
    except BadRequest:
        pass
    if earley_refuses:
        with pytest.raises(BadRequest):
            FAST.parse(filter_)
    else:
        assert FAST.parse(filter_) == EARLEY.parse(filter_)
