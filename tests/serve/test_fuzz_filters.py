"""Fuzzing ``/structures`` with filters from optimade's own grammar, valid and broken.

Every answer is 200, 400, 403 or 501 with an OPTIMADE error document for the errors, never a
500, never Python in the body; SQLite and MongoDB (mongomock) give the same answer; and a 200
lists exactly the structures a Python evaluation of the filter's predicate picks. The fast
(LALR) parser accepts what optimade's Earley parser accepts, with the same tree.

A fixed seed (``derandomize``) and a bounded count here; ``bench/fuzz.py`` runs 10,000 and
more and prints the answers by status.
"""

from __future__ import annotations

from collections import Counter

import pytest
from filter_fuzz import answer_problems, broken, outcome, sentences
from filter_oracle import matching_ids, stored_rows
from hypothesis import HealthCheck, Phase, given, settings
from lark.exceptions import VisitError
from optimade.exceptions import BadRequest
from optimade.filterparser import LarkParser

from gnomon.storage.optimade.filter_parser import FastFilterParser
from gnomon.storage.optimade.predicate import PredicateTransformer

FUZZ = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def judge(clients, campaign_urls):
    """``judge(filter)``: asks both backends, checks each answer and their agreement with each
    other and with the Python evaluation; returns the status."""
    collection = clients["sqlite"].app.state.entry_collections["structures"]
    meaning = PredicateTransformer(mapper=collection.resource_mapper)
    parser = FastFilterParser()
    rows = stored_rows(campaign_urls["sqlite"])

    def expected(filter_: str) -> tuple:
        try:
            predicate = meaning.transform(parser.parse(filter_))
        except BadRequest:
            return (400,)
        except VisitError as exc:
            return (400,) if isinstance(exc.orig_exc, BadRequest) else (501,)
        return (200, tuple(matching_ids(predicate, rows)))

    def judge_(filter_: str) -> int:
        outcomes = {}
        for backend, client in clients.items():
            r = client.get("/v1/structures",
                           params={"filter": filter_, "page_limit": 1000, "response_fields": "id"})
            assert not answer_problems(r.status_code, r.text), (backend, filter_, r.text[:500])
            outcomes[backend] = outcome(r.status_code, r.text)
        assert outcomes["sqlite"] == outcomes["mongomock"], (filter_, outcomes)
        assert outcomes["sqlite"][:2] == expected(filter_), (filter_, outcomes["sqlite"])
        return outcomes["sqlite"][0]

    return judge_


@FUZZ
@given(filter_=sentences)
def test_grammar_sentences(judge, filter_):
    judge(filter_)


@FUZZ
@given(filter_=broken())
def test_broken_sentences(judge, filter_):
    judge(filter_)


def test_the_fuzzed_answers_are_a_mix(judge):
    """The grammar's sentences reach the data: a good share is answered with structures,
    and the refusals (400, 501) are there too, so the properties above are not checked on
    errors alone."""
    statuses: Counter = Counter()

    @settings(FUZZ, max_examples=120, phases=[Phase.generate])
    @given(filter_=sentences)
    def run(filter_):
        statuses[judge(filter_)] += 1

    run()
    assert statuses[200] >= 20, statuses
    assert statuses[400] > 0 and statuses[501] > 0, statuses


EARLEY = LarkParser()
FAST = FastFilterParser()


def _parsed(parse, filter_: str):
    try:
        return parse(filter_)
    except BadRequest:
        return None


@settings(FUZZ, max_examples=250)
@given(filter_=sentences | broken())
def test_fast_parser_accepts_what_optimade_accepts(filter_):
    if len(filter_) > 400:  # optimade's Earley parser takes seconds on long broken filters
        return
    assert _parsed(FAST._cached, filter_) == _parsed(EARLEY.parse, filter_), filter_
