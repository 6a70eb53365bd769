"""Security headers on every answer of ``gnomon serve``: API documents, errors of every kind
(including those the middleware answers before the app), explorer pages, figures, downloads and
scripts; and explorer pages that need nothing the policy forbids (no inline script, no inline
event handler), checked in the markup and in Chromium.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from serve_helpers import fill, live_server, new_url

from gnomon.serve.security import SECURITY_HEADERS

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from gnomon.serve.app import create_app

    url = new_url("sqlite", tmp_path_factory.mktemp("headers"))
    fill(url)
    with TestClient(create_app(url)) as client:
        yield client, url


def assert_secure(response) -> None:
    for name, value in SECURITY_HEADERS:
        assert response.headers.get(name.decode()) == value.decode(), (
            response.request.url, name, response.headers)
    policy = dict(part.strip().split(" ", 1) for part in
                  response.headers["content-security-policy"].split(";"))
    assert policy["script-src"] == "'self'"  # no inline script, no eval, no other origin
    assert policy["frame-ancestors"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"


def some_phase(client) -> str:
    return client.get("/v1/structures", params={"page_limit": 1}).json()["data"][0]["id"]


def test_every_kind_of_answer_has_the_headers(app_client):
    client, _ = app_client
    phase = some_phase(client)
    answers = {
        "/versions": 200, "/v1/info": 200, "/v1/info/structures": 200, "/v1/links": 200,
        "/v1/structures": 200, f"/v1/structures/{phase}": 200,
        "/v1/structures?filter=nsites%3D": 400, "/v1/structures?page_limit=5000": 403,
        "/v1/structures?filter=elements.x%3D1": 501, "/v1/nope": 404, "/v2/structures": 553,
        "/v1/structures?filter=" + "x" * 20_000: 414,
        "/": 200, f"/phases/{phase}": 200, f"/phases/{phase}/download/cif": 200,
        "/phases/no-such-phase": 404, "/explorer/assets/explorer.css": 200,
        "/explorer/assets/explorer.js": 200, "/explorer/assets/nope.js": 404,
    }
    for path, status in answers.items():
        r = client.get(path)
        assert r.status_code == status, (path, r.status_code, r.text[:200])
        assert_secure(r)
    for method in ("POST", "DELETE"):
        r = client.request(method, "/v1/structures", content=b"x" * 100_000)
        assert r.status_code in (405, 413)
        assert_secure(r)


class _Markup(HTMLParser):
    """Inline scripts, inline event handlers and javascript: URLs in a page."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.problems.append("an inline <script>")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"an inline handler {name}= on <{tag}>")
            if value and value.strip().lower().startswith("javascript:"):
                self.problems.append(f"a javascript: URL in {name}= on <{tag}>")


def explorer_pages(client, start: str = "/", limit: int = 40) -> dict[str, str]:
    """HTML pages reachable from ``start`` by the explorer's own links (same origin)."""
    from html.parser import HTMLParser as _Parser

    class Links(_Parser):
        def __init__(self):
            super().__init__()
            self.hrefs: list[str] = []

        def handle_starttag(self, tag, attrs):
            href = dict(attrs).get("href")
            if tag == "a" and href and href.startswith("/") and not href.startswith("//"):
                self.hrefs.append(href.split("#")[0])

    pages, queue = {}, [start]
    while queue and len(pages) < limit:
        path = queue.pop(0)
        if path in pages or path.startswith("/v1") or "/download/" in path:
            continue
        r = client.get(path)
        if "text/html" not in r.headers.get("content-type", ""):
            continue
        pages[path] = r.text
        links = Links()
        links.feed(r.text)
        queue += [h for h in links.hrefs if h not in pages]
    return pages


def test_explorer_pages_need_no_inline_script(app_client):
    """The policy forbids inline script: the pages must not have any (the explorer keeps its
    JavaScript in files it serves)."""
    client, _ = app_client
    pages = explorer_pages(client)
    assert len(pages) >= 3, list(pages)
    for path, text in pages.items():
        markup = _Markup()
        markup.feed(text)
        assert not markup.problems, (path, markup.problems)


def test_explorer_runs_under_the_policy_in_chromium(app_client):
    """Chromium enforces the policy: loading the explorer's pages logs no violation."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    client, url = app_client
    ternary = client.get("/v1/structures", params={"filter": "nelements=3", "page_limit": 1}
                         ).json()["data"][0]["id"]
    plotted = ["/systems/Li-O", "/systems/Li-Mn-O", f"/phases/{ternary}"]  # plotly's figures
    paths = [*explorer_pages(client, limit=5), *plotted]
    with live_server(url) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            violations: list[str] = []
            page.on("console", lambda m: violations.append(m.text)
                    if "Content Security Policy" in m.text else None)
            for path in paths:
                response = page.goto(base + path, wait_until="load")
                assert response is not None and response.ok, path
                assert response.headers["content-security-policy"]
                if path in plotted:  # the figure was drawn, with only the scripts allowed
                    page.wait_for_selector("svg.main-svg", timeout=60_000)
            assert not violations, violations
        finally:
            browser.close()
