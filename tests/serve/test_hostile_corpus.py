"""A fixed corpus of what a public endpoint gets, each with the answer it must get, on both
backends: huge and tiny numbers, 1e999, deep nesting, NUL and control characters, unicode,
4,000-character strings, SQL (and MongoDB, and regular-expression) syntax in every string
position, unknown and other providers' fields, every query parameter out of range, and a
query that would hold a core.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from filter_fuzz import answer_problems, outcome
from filter_oracle import stored_rows
from serve_helpers import SCHEME, campaign_entries, fill, grid_structure, new_url

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.storage import open_repository
from gnomon.storage.optimade.limits import (
    MAX_FILTER_CHARS,
    MAX_FILTER_COMPARISONS,
    MAX_FILTER_DEPTH,
    MAX_PAGE_OFFSET,
)

INJECTIONS = (
    "x' OR '1'='1", "x'); DROP TABLE structures; --", "1 OR 1=1", "\\' OR 1=1 --",
    '{"$ne": null}', "$where", ".*", "(", "^", "%", "_", "<script>alert(1)</script>",
)
#: sources stored in the corpus database (one entry each), to be found exactly
SOURCES = ("x'); DROP TABLE structures; --", "a.b*c", "ends-with-newline\n", "é😀\u202e",
           "%_wild", "<script>alert(1)</script>")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Both backends over a campaign plus entries whose sources are hostile; yields
    ``ask(path, **params) -> [(status, body) per backend]`` and the stored rows."""
    from fastapi.testclient import TestClient

    from gnomon.serve.app import create_app

    tmp = tmp_path_factory.mktemp("hostile")
    entries = campaign_entries(n=8)
    for i, source in enumerate(SOURCES):
        entries.append(make_entry(None, -9.0 - i, SCHEME, source=source,
                                  structure=grid_structure(["Li", "Li", "O"])))
    # hydrogen, which pymatgen also reads from "D" and "T"
    entries.append(make_entry(None, -6.8, SCHEME, source="hydrogen",
                              structure=grid_structure(["H", "H"], spacing=1.5)))
    urls = {b: new_url(b, tmp) for b in ("sqlite", "mongomock")}
    clients = {}
    for backend, url in urls.items():
        fill(url, entries)
        clients[backend] = TestClient(create_app(url))
        clients[backend].__enter__()

    def ask(path: str = "/v1/structures", **params) -> list:
        answers = []
        if path == "/v1/structures":
            params = {"page_limit": "1000", **params}  # every match on one page
        for backend, client in clients.items():
            r = client.get(path, params=params)
            problems = answer_problems(r.status_code, r.text)
            assert not problems, (backend, path, params, problems, r.text[:400])
            answers.append(outcome(r.status_code, r.text) if path == "/v1/structures"
                           else (r.status_code,))
        assert answers[0] == answers[1], (params, answers)
        return answers[0]

    yield ask, {r["id"]: r for r in stored_rows(urls["sqlite"])}, urls
    for client in clients.values():
        client.__exit__(None, None, None)


def ids(answer: tuple) -> set[str]:
    assert answer[0] == 200, answer
    return set(answer[1])


def where(rows: dict, predicate) -> set[str]:
    return {i for i, r in rows.items() if predicate(r)}


def test_numbers_beyond_any_column(corpus):
    ask, rows, _ = corpus
    everything = set(rows)
    assert ids(ask(filter="nsites=99999999999999999999999999")) == set()
    assert ids(ask(filter="nsites<99999999999999999999999999")) == everything
    assert ids(ask(filter="nsites>-99999999999999999999999999")) == everything
    assert ids(ask(filter="nsites<9223372036854775808")) == everything
    assert ids(ask(filter="species_at_sites LENGTH 99999999999999999999999")) == set()
    known = where(rows, lambda r: r["e_above_hull"] is not None)
    assert ids(ask(filter="_gnomon_e_above_hull<1e999")) == known  # 1e999 is infinity
    assert ids(ask(filter="_gnomon_e_above_hull>-1e999")) == known
    assert ids(ask(filter="_gnomon_e_above_hull>=1e-999")) == where(  # 1e-999 is 0
        rows, lambda r: r["e_above_hull"] is not None and r["e_above_hull"] >= 0)
    assert ids(ask(filter='_gnomon_e_above_hull="NaN"')) == set()  # a string: no match
    assert ids(ask(filter='NOT _gnomon_e_above_hull="inf"')) == known


def test_nesting_and_complexity_have_limits(corpus):
    ask, rows, _ = corpus
    deep = "(" * MAX_FILTER_DEPTH + "nsites>=1" + ")" * MAX_FILTER_DEPTH
    assert ids(ask(filter=deep)) == set(rows)
    for filter_ in ("(" * (MAX_FILTER_DEPTH + 1) + "nsites>=1" + ")" * (MAX_FILTER_DEPTH + 1),
                    "(" * 200 + "nsites=2" + ")" * 200, "NOT (" * 200 + "nsites=2" + ")" * 200):
        assert ask(filter=filter_) == (400,)
    assert ids(ask(filter=" OR ".join(["nsites=2"] * MAX_FILTER_COMPARISONS))) == where(
        rows, lambda r: r["nsites"] == 2)
    assert ask(filter=" OR ".join(["nsites=2"] * (MAX_FILTER_COMPARISONS + 1))) == (400,)
    assert ask(filter=" AND ".join(['elements HAS "Li"'] * 300)) == (400,)
    # a parenthesis inside a string is text, not nesting
    assert ids(ask(filter='_gnomon_source="' + "(" * 100 + '"')) == set()


def test_control_characters_and_unicode(corpus):
    ask, rows, _ = corpus
    assert ask(filter='_gnomon_source="a\x00b"') == (400,)  # NUL: refused
    assert ask(filter="nsites=2\x00") == (400,)
    assert ask(filter="nsites\x01=2") == (400,)
    for text in ("\x01\x1f\x7f", "\t\r\n", "\ufeff", "\U0010ffff", "\u202e"):
        assert ids(ask(filter=f'_gnomon_source="{text}"')) == set()
    assert ids(ask(filter='_gnomon_source CONTAINS "😀"')) == where(
        rows, lambda r: "😀" in (r["source"] or ""))
    assert len(ids(ask(filter='_gnomon_source CONTAINS "😀"'))) == 1
    # ENDS WITH matches the end, not the place before a final newline
    assert len(ids(ask(filter='_gnomon_source ENDS WITH "newline\n"'))) == 1
    assert ids(ask(filter='_gnomon_source ENDS WITH "newline"')) == set()


def test_long_strings(corpus):
    ask, rows, _ = corpus
    room = MAX_FILTER_CHARS - len('_gnomon_source=""')
    assert ids(ask(filter='_gnomon_source="' + "a" * room + '"')) == set()
    assert ask(filter='_gnomon_source="' + "a" * (room + 1) + '"') == (400,)
    assert ask(filter='_gnomon_source="' + "é" * (room // 2) + '"')[0] == 200
    assert ask("/v1/structures/" + "a" * 4000) == (200,)  # no such id: an empty answer
    assert ask(sort="x" * 3000) == (400,)


#: comparisons on the source and what they mean for one stored source
SOURCE_POSITIONS = {
    '_gnomon_source="{}"': lambda s, t: s == t,
    '_gnomon_source<"{}"': lambda s, t: s < t,
    '_gnomon_source CONTAINS "{}"': lambda s, t: t in s,
    '_gnomon_source STARTS WITH "{}"': lambda s, t: s.startswith(t),
    '_gnomon_source ENDS "{}"': lambda s, t: s.endswith(t),
}


@pytest.mark.parametrize("position", [
    '_gnomon_source="{}"', '_gnomon_source!="{}"', '_gnomon_source<"{}"',
    '_gnomon_source CONTAINS "{}"', '_gnomon_source STARTS WITH "{}"',
    '_gnomon_source ENDS "{}"', 'elements HAS "{}"', 'elements HAS ALL "Li","{}"',
    'elements HAS ANY "{}","Na"', 'elements HAS ONLY "{}"', 'species_at_sites HAS "{}"',
    'species_at_sites HAS ALL "{}","O"', 'species_at_sites HAS ONLY "Li","{}"',
    'id="{}"', 'chemical_formula_reduced="{}"', '_gnomon_scheme="{}"',
    'last_modified>"{}"', '_exmpl_x="{}"', '"{}"=chemical_formula_reduced',
])
def test_injection_in_every_string_position(corpus, position):
    """A value is data: in any position, a hostile string matches exactly what the same
    comparison with any other string would (the stored hostile source, for the source field),
    and the database and the view are whole afterwards."""
    ask, rows, urls = corpus
    for text in INJECTIONS:
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        answer = ask(filter=position.format(quoted))
        if position.startswith("last_modified"):
            assert answer == (400,)  # not a timestamp
            continue
        assert answer[0] == 200, (position, text, answer)
        found = {rows[i]["source"] for i in answer[1]}
        on_source = SOURCE_POSITIONS.get(position)
        if on_source is not None:
            stored = {r["source"] for r in rows.values() if r["source"] is not None}
            assert found == {s for s in stored if on_source(s, text)}, (position, text)
        elif "!=" not in position and "ONLY" not in position and "ANY" not in position:
            assert not answer[1], (position, text, found)  # no element, formula, id is it
    assert ask()[2] == len(rows)
    repo = open_repository(urls["sqlite"])
    try:
        assert repo.count("entries") == len(rows) + 1  # + the composition-only entry
    finally:
        repo.close()


def test_unknown_and_other_providers_fields(corpus):
    ask, rows, _ = corpus
    everything = set(rows)
    assert ask(filter="no_such_field=1") == (400,)
    assert ask(filter="_gnomon_no_such_field=1") == (400,)
    for filter_ in ("_exmpl_band_gap>1", "NOT _exmpl_band_gap>1", "_mp_x HAS \"Li\"",
                    "NOT _mp_x LENGTH 2", '_zzz_x CONTAINS "a"', "immutable_id=\"x\"",
                    'NOT chemical_formula_hill="Li2O"', "_exmpl_a.b.c=1"):
        assert ids(ask(filter=filter_)) == set(), filter_  # unknown: never true, even under NOT
    for filter_ in ("_exmpl_band_gap IS UNKNOWN", "immutable_id IS UNKNOWN",
                    "NOT _exmpl_x IS KNOWN", 'type="structures"', "species IS KNOWN",
                    'type STARTS "struct"'):
        assert ids(ask(filter=filter_)) == everything, filter_
    assert ids(ask(filter='NOT type="structures"')) == set()
    # an unknown value under NOT stays unknown: imports have no round
    assert ids(ask(filter="NOT _gnomon_round=1")) == where(rows, lambda r: r["round"] == 2)
    for filter_ in ("references.doi=\"x\"", "structures.id=\"x\"", "elements.x=\"Li\"",
                    "nsites=nelements", "elements:species_at_sites HAS \"Li\":\"Li\"",
                    "lattice_vectors HAS 1", "_gnomon_is_stable=TRUE", "3=4"):
        assert ask(filter=filter_) == (501,), filter_
    for filter_ in ("nsites HAS 2", "nsites LENGTH 2", "_gnomon_is_stable<1",
                    'last_modified>"garbage"', 'last_modified>"0001-01-01T00:00:00+14:00"'):
        assert ask(filter=filter_) == (400,), filter_


@pytest.mark.parametrize("params, status", [
    ({"page_limit": "-1"}, 400), ({"page_limit": "1001"}, 403),
    ({"page_limit": "99999999999999999999999"}, 403), ({"page_limit": "abc"}, 400),
    ({"page_limit": "1.5"}, 400), ({"page_limit": ""}, 400),
    ({"page_offset": "-1"}, 400), ({"page_offset": str(MAX_PAGE_OFFSET + 1)}, 400),
    ({"page_offset": "99999999999999999999999"}, 400), ({"page_offset": "1e3"}, 400),
    ({"page_offset": str(MAX_PAGE_OFFSET)}, 200), ({"page_number": "0"}, 200),
    ({"page_number": "99999999999999999999"}, 400), ({"page_number": "abc"}, 400),
    ({"sort": "nope"}, 400), ({"sort": ","}, 400), ({"sort": "species_at_sites"}, 400),
    ({"sort": "_gnomon_nothing"}, 400), ({"sort": "-"}, 400),
    ({"response_fields": "nope"}, 400), ({"response_fields": ",,,"}, 400),
    ({"response_fields": "_exmpl_x"}, 200), ({"response_format": "xml"}, 400),
    ({"include": "x"}, 400), ({"email_address": "x"}, 400), ({"page_above": "3"}, 501),
    ({"zzz": "1"}, 400), ({"api_hint": "v9"}, 200), ({"filter": " "}, 200),
])
def test_query_parameters_out_of_range(corpus, params, status):
    ask, _, _ = corpus
    assert ask(**params)[0] == status
    assert ask("/v1/structures/no-such-id", **params)[0] in (200, 400, 403, 501)


def test_a_query_past_the_time_limit_is_stopped(corpus, tmp_path):
    """A query that would hold a core for seconds is stopped at the request's deadline and
    answered 503 with an error document; the next request is served."""
    from fastapi.testclient import TestClient

    from gnomon.serve.app import create_app
    from gnomon.storage.optimade.collection import QueryTimeLimit

    _, _, urls = corpus
    heavy = " OR ".join(f'_gnomon_source ENDS WITH "{i}"' for i in range(MAX_FILTER_COMPARISONS))
    for url in urls.values():
        with TestClient(create_app(url, query_time_s=0.0)) as client:
            r = client.get("/v1/structures", params={"filter": heavy, "page_limit": 1000})
            assert r.status_code == 503, r.text[:300]
            error = r.json()["errors"][0]
            assert error["status"] == "503" and "limit" in error["detail"]
            collection = client.app.state.entry_collections["structures"]
            collection.time_limit_s = 10.0
            assert client.get("/v1/structures", params={"filter": heavy}).status_code == 200
    # the mechanism itself: a recursive count to 10^9 is interrupted at the deadline
    with TestClient(create_app(urls["sqlite"])) as client:
        collection = client.app.state.entry_collections["structures"]
        conn = collection.view.connection()
        with pytest.raises(QueryTimeLimit), collection.time_limited(0.0):
            conn.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                         "WHERE x < 1000000000) SELECT count(*) FROM c").fetchone()
        assert conn.execute("SELECT count(*) FROM structures").fetchone()[0] > 0


def test_a_path_id_is_a_value_never_filter(corpus):
    """optimade writes ``/structures/{id}`` into ``id="{id}"``: a quote in the id once let the
    rest be read as filter. Now any id is looked up whole."""
    from fastapi.testclient import TestClient

    from gnomon.serve.app import create_app

    _, rows, urls = corpus
    real = sorted(rows)[0]
    for url in urls.values():
        with TestClient(create_app(url)) as client:
            assert client.get(f"/v1/structures/{real}").json()["data"]["id"] == real
            for hostile in (f'{real}" OR nsites>0 OR id="y', 'x" OR nsites>0 OR id="y',
                            'a"b', "a\\", "\x00", "é😀", "a" * 4000):
                r = client.get("/v1/structures/" + quote(hostile, safe=""))
                assert r.status_code == 200 and r.json()["data"] is None, (hostile, r.text[:300])


def test_isotope_symbols_are_not_elements(corpus):
    """pymatgen reads D and T as hydrogen; no structure lists them, so neither backend may
    match them as H (SQLite's element masks once did)."""
    ask, rows, _ = corpus
    assert ids(ask(filter='elements HAS "H"')) == where(rows, lambda r: "H" in r["elements"])
    assert ids(ask(filter='elements HAS "H"'))  # there is hydrogen to be mistaken
    assert ids(ask(filter='elements HAS "D"')) == set()
    assert ids(ask(filter='elements HAS ALL "Li","T"')) == set()
    assert ids(ask(filter='elements HAS ANY "D","Na"')) == where(rows, lambda r: "Na" in
                                                                r["elements"])
    assert ids(ask(filter='elements HAS ONLY "Li","O","D"')) == where(
        rows, lambda r: set(r["elements"]) <= {"Li", "O"})
