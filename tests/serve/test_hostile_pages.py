"""The explorer and the API with hostile text stored in the database, paths that climb out of
their folder, and requests over the size limits.

Stored text: campaign names, sources, calculation and candidate ids, code versions, and a
structure imported from an OPTIMADE provider whose resource id is markup (the import keeps the
provider's id in the source). Every page reachable from ``/`` must show them escaped: no
payload appears as markup, and in Chromium none of them runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from serve_helpers import SCHEME, campaign_entries, fill, grid_structure, live_server, new_url
from test_security_headers import assert_secure, explorer_pages

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.optimade_import import read_provider
from gnomon.storage import Campaign, Round, open_repository
from gnomon.storage.optimade.limits import MAX_REQUEST_BYTES

CHROMIUM = Path("/usr/bin/chromium")

#: each sets window.__xss to its number if it ever runs
PAYLOADS = (
    "<script>window.__xss=1</script>",
    '"><img src=x onerror="window.__xss=2">',
    "'><svg onload=window.__xss=3>",
    "</title></textarea><script>window.__xss=4</script>",
    "javascript:window.__xss=5",
    "<iframe srcdoc='<script>parent.__xss=6</script>'>",
)
#: what must never reach a page unescaped
MARKERS = ("<script>window.__xss", "<img src=x onerror", "<svg onload", "<iframe srcdoc",
           'href="javascript:')
CAMPAIGN = PAYLOADS[1]


def hostile_provider(request: httpx.Request) -> httpx.Response:
    """An OPTIMADE provider whose one structure has a resource id made of markup."""
    attributes = {
        "lattice_vectors": [[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]],
        "cartesian_site_positions": [[0, 0, 0], [1.5, 1.5, 1.5]],
        "species_at_sites": ["<b>Li</b>", "O"],
        "species": [{"name": "<b>Li</b>", "chemical_symbols": ["Li"], "concentration": [1.0]},
                    {"name": "O", "chemical_symbols": ["O"], "concentration": [1.0]}],
        "chemical_formula_reduced": PAYLOADS[0],
        "_gnomon_uncorrected_energy_per_atom": -4.0,
    }
    body = {"data": [{"id": PAYLOADS[3], "type": "structures", "attributes": attributes}],
            "meta": {"more_data_available": False}, "links": {"next": None}}
    return httpx.Response(200, json=body)


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory) -> str:
    url = new_url("sqlite", tmp_path_factory.mktemp("hostile-pages"))
    entries = campaign_entries(n=6)
    for i, text in enumerate(PAYLOADS):
        entries.append(make_entry(None, -10.0 - i, SCHEME, structure=grid_structure(["Li", "O"]),
                                  source=text, campaign=CAMPAIGN, round=1, calculation_id=text,
                                  candidate_id=text, code_version=text))
    with httpx.Client(transport=httpx.MockTransport(hostile_provider)) as client:
        imported = read_provider("http://provider.example/optimade", None, SCHEME, client=client)
    assert len(imported.entries.entries) == 1, imported.rejected
    entries += imported.entries.entries
    fill(url, entries)
    repo = open_repository(url)
    try:
        repo.put([Campaign(id=CAMPAIGN, name=CAMPAIGN, status="done", rounds_done=1,
                           stop_reason=PAYLOADS[2], config={"elements": ["Li", "O"]})])
        repo.put([Round(id=Round.key(CAMPAIGN, 1), campaign=CAMPAIGN, index=1,
                        metrics={"policy": PAYLOADS[4], "generated": 10, "selected": 3,
                                 "relaxed": 3, "hits": 1})])
        assert any(PAYLOADS[3] in (e.source or "") for e in repo.entries())
    finally:
        repo.close()
    return url


@pytest.fixture(scope="module")
def client(hostile_db):
    from fastapi.testclient import TestClient

    from gnomon.serve.app import create_app

    with TestClient(create_app(hostile_db)) as c:
        yield c


def test_stored_markup_is_escaped_on_every_page(client, hostile_db):
    pages = explorer_pages(client, limit=60)
    repo = open_repository(hostile_db)
    try:
        ids = [e.id for e in repo.entries() if e.campaign == CAMPAIGN or
               "provider.example" in (e.source or "")]
    finally:
        repo.close()
    for phase_id in ids:  # every hostile phase's page, linked or not
        r = client.get(f"/phases/{phase_id}")
        assert r.status_code == 200
        pages[f"/phases/{phase_id}"] = r.text
    pages["/campaigns/" + quote(CAMPAIGN, safe="")] = client.get(
        "/campaigns/" + quote(CAMPAIGN, safe="")).text
    shown = "".join(pages.values())
    assert "&lt;script&gt;window.__xss" in shown  # the text is shown, escaped
    for path, text in pages.items():
        for marker in MARKERS:
            assert marker not in text, (path, marker)
    svg = client.get("/campaigns/" + quote(CAMPAIGN, safe="") + "/metrics.svg")
    if svg.status_code == 200:
        assert not any(marker in svg.text for marker in MARKERS)
        assert_secure(svg)


def test_stored_markup_stays_data_in_the_api(client):
    r = client.get("/v1/structures", params={"filter": '_gnomon_campaign="' +
                                             CAMPAIGN.replace('"', '\\"') + '"'})
    assert r.status_code == 200
    assert {d["attributes"]["_gnomon_campaign"] for d in r.json()["data"]} == {CAMPAIGN}
    assert r.headers["content-type"].startswith("application/vnd.api+json")
    assert_secure(r)


def test_no_payload_runs_in_chromium(hostile_db, client):
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    paths = list(explorer_pages(client, limit=25))
    repo = open_repository(hostile_db)
    try:
        paths += [f"/phases/{e.id}" for e in repo.entries() if e.campaign == CAMPAIGN][:2]
    finally:
        repo.close()
    paths.append("/campaigns/" + quote(CAMPAIGN, safe=""))
    with live_server(hostile_db) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            for path in paths:
                page.goto(base + path, wait_until="load")
                assert page.evaluate("window.__xss") is None, path
            assert not dialogs
        finally:
            browser.close()


@pytest.mark.parametrize("path", [
    "/phases/../../../../etc/passwd",
    "/phases/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/phases/%2e%2e%2f%2e%2e%2fetc%2fpasswd/download/cif",
    "/phases/x/download/..%2F..%2F..%2Fetc%2Fpasswd",
    "/phases/x/download/%2e%2e%2f%2e%2e%2fapp.py",
    "/explorer/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/explorer/assets/%2e%2e%2fapp.py",
    "/explorer/assets/..%5C..%5Capp.py",
    "/explorer/assets/%2Fetc%2Fpasswd",
    "/explorer/assets/static%2F..%2F..%2Fapp.py",
    "/campaigns/..%2F..%2Fetc%2Fpasswd/metrics.svg",
    "/systems/..%2F..%2Fetc%2Fpasswd",
    "/v1/structures/..%2F..%2Fetc%2Fpasswd",
])
def test_no_path_climbs_out(client, path):
    """A path that names a file outside what is served finds nothing: a 4xx (or an empty
    OPTIMADE answer), never a file's content."""
    r = client.get(path, follow_redirects=True)
    assert r.status_code in (200, 400, 404, 422), (path, r.status_code)
    for leak in ("root:x:0:0", "def create_app", "import ", "[extensions]"):
        assert leak not in r.text, (path, leak)
    if r.status_code == 200:
        assert r.headers["content-type"].startswith("application/vnd.api+json"), path
        assert json.loads(r.text)["data"] in (None, [])
    assert_secure(r)


def test_downloads_name_their_file_safely(client):
    phase = client.get("/v1/structures", params={"page_limit": 1}).json()["data"][0]["id"]
    for fmt in ("cif", "poscar", "json"):
        r = client.get(f"/phases/{phase}/download/{fmt}")
        assert r.status_code == 200
        disposition = r.headers["content-disposition"]
        name = disposition.split("filename=", 1)[1].strip('"')
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert_secure(r)


def test_requests_over_the_size_limits(hostile_db):
    """Through a real server (uvicorn on loopback): a long URL, a big query string, big
    headers and a body are refused with a 4xx before anything parses them."""
    with live_server(hostile_db) as base:
        with httpx.Client(base_url=base, timeout=60) as http:
            long_path = http.get("/phases/" + "a" * (MAX_REQUEST_BYTES + 10))
            big_query = http.get("/v1/structures", params={"filter": "x" * 20_000})
            many_params = http.get("/v1/structures?" + "&".join(f"p{i}=1" for i in range(4000)))
            big_headers = http.get("/v1/info", headers={f"x-h{i}": "y" * 200 for i in range(100)})
            body = http.request("GET", "/v1/structures", content=b"x" * 200_000)
            fine = http.get("/v1/structures", params={"filter": "nsites>1"})
    assert fine.status_code == 200
    for r in (long_path, big_query, many_params, big_headers, body):
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert long_path.status_code == big_query.status_code == many_params.status_code == 414
    assert big_headers.status_code == 431 and body.status_code == 413
    for r in (long_path, big_query, body):
        assert json.loads(r.text)["errors"][0]["status"] == str(r.status_code)
        assert_secure(r)
