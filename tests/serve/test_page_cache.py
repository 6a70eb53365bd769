"""Answers of repeated /structures queries kept per view: byte for byte the answers the server
gives without them (but for the time the query was answered), never an old view's answer,
and within their bound."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient
from serve_helpers import SCHEME, grid_structure

import gnomon.serve.app as app_module
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.serve.app import create_app
from gnomon.storage import open_repository

QUERIES = [
    "/v1/structures",
    '/v1/structures?filter=elements HAS ALL "Li","O" AND _gnomon_e_above_hull<=0.5',
    "/v1/structures?filter=nelements=3&sort=-_gnomon_e_above_hull&page_limit=3",
    "/v1/structures?filter=nelements>=2&page_limit=2&page_offset=4",
    "/v1/structures?response_fields=chemical_formula_reduced,_gnomon_is_stable&page_limit=5",
    "/v1/structures?filter=_gnomon_is_stable=1&sort=chemical_formula_reduced",
    "/structures?page_limit=4",
    "/v1/structures?filter=elements HAS",  # a filter that does not parse: 400
    "/v1/structures?sort=elements",  # not sortable: 400
    "/v1/structures?unknown_parameter=1&page_limit=1",  # answered with a warning
    "/v1/structures?page_limit=1&api_hint=v1",
]


@pytest.fixture(scope="module")
def pair(campaign_urls):
    """The app over the SQLite campaign with kept pages and without, each counting the
    answers it computed."""
    url = campaign_urls["sqlite"]
    apps = {kept: create_app(url, explorer=False, kept_pages=kept) for kept in (0, 64)}
    clients = {kept: TestClient(a) for kept, a in apps.items()}
    for c in clients.values():
        c.__enter__()
    yield clients
    for c in clients.values():
        c.__exit__(None, None, None)


@pytest.fixture
def computed(monkeypatch) -> list[str]:
    """The queries answered by optimade's handler (not from kept pages) during the test."""
    seen: list[str] = []
    original = app_module.get_entries

    def counted(*, collection, request, params):
        seen.append(str(request.url))
        return original(collection=collection, request=request, params=params)

    monkeypatch.setattr(app_module, "get_entries", counted)
    return seen


def _without_time(response) -> tuple[int, dict, bytes]:
    body = response.content
    if response.headers.get("content-type", "").startswith("application/vnd.api+json"):
        doc = json.loads(body)
        doc.get("meta", {}).pop("time_stamp", None)
        body = json.dumps(doc, sort_keys=True).encode()
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    assert int(response.headers["content-length"]) == len(response.content)
    return response.status_code, headers, body


@pytest.mark.parametrize("origin", [None, "https://example.org"])
def test_answers_are_the_same_with_and_without_kept_pages(pair, computed, origin):
    headers = {"Origin": origin} if origin else {}
    for query in QUERIES:
        fresh = pair[0].get(query, headers=headers)
        before = len(computed)
        answers = [_without_time(r) for r in
                   (fresh, pair[64].get(query, headers=headers),
                    pair[64].get(query, headers=headers))]
        assert answers[0] == answers[1] == answers[2], query
        # a whole 200 answer without warnings is kept: the repeated query is not computed
        keepable = fresh.status_code == 200 and "warnings" not in fresh.json()["meta"]
        assert len(computed) - before == (1 if keepable else 2), query
    assert any("warnings" in pair[0].get(q).json().get("meta", {}) for q in QUERIES)


def test_a_kept_answer_has_the_time_it_was_answered(pair):
    query = "/v1/structures?page_limit=2"
    first = pair[64].get(query).json()["meta"]["time_stamp"]
    time.sleep(0.01)
    second = pair[64].get(query).json()["meta"]["time_stamp"]
    assert second > first


def test_the_bound_drops_the_pages_used_longest_ago(campaign_urls, computed):
    with TestClient(create_app(campaign_urls["sqlite"], explorer=False, kept_pages=2)) as client:
        for query in ("/v1/structures?page_limit=1", "/v1/structures?page_limit=2",
                      "/v1/structures?page_limit=1", "/v1/structures?page_limit=3",
                      "/v1/structures?page_limit=1", "/v1/structures?page_limit=2"):
            assert client.get(query).status_code == 200
    assert [c.rsplit("=", 1)[1] for c in computed] == ["1", "2", "3", "2"]


def test_a_new_view_is_never_answered_from_the_old_ones_pages(tmp_path):
    url = f"sqlite:///{tmp_path / 'gnomon.db'}"
    repo = open_repository(url)
    HullEngine(repo).ingest([make_entry(None, -3.8, SCHEME, source="ref",
                                        structure=grid_structure(["Li", "Li"])),
                             make_entry(None, -9.8, SCHEME, source="ref",
                                        structure=grid_structure(["O", "O"]))])
    query = "/v1/structures?page_limit=1"
    try:
        with TestClient(create_app(url, explorer=False, refresh_s=0.05)) as client:
            assert client.get(query).json()["meta"]["data_returned"] == 2
            assert client.get(query).json()["meta"]["data_returned"] == 2  # kept
            HullEngine(repo).ingest([make_entry(None, -20.0, SCHEME, source="new",
                                                structure=grid_structure(["Li", "O", "O"]))])
            # kept answers still drive the refresh checks; then the new view answers
            deadline = time.monotonic() + 60
            returned = 2
            while returned == 2 and time.monotonic() < deadline:
                time.sleep(0.1)
                returned = client.get(query).json()["meta"]["data_returned"]
            assert returned == 3
    finally:
        repo.close()


def test_a_kept_answer_is_given_only_to_a_request_with_the_token(campaign_urls):
    token = "t" * 40
    query = "/v1/structures?page_limit=2"
    app = create_app(campaign_urls["sqlite"], explorer=False, token=token)
    with TestClient(app) as client:
        for _ in range(2):
            assert client.get(query, headers={"Authorization": f"Bearer {token}"}) \
                .status_code == 200
        assert client.get(query).status_code == 401
        assert client.get(query, headers={"Authorization": "Bearer wrong"}).status_code == 401
