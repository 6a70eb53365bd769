"""The explorer in a real browser: Debian's chromium driven by Playwright (sync API).

A uvicorn server on a free loopback port serves the explorer over a HullEngine-built
database; the browser loads the pages, filters and sorts the phase table through the page's
own controls, and downloads a CIF that must parse with pymatgen. Playwright is pointed at
/usr/bin/chromium and never downloads a browser of its own.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

from gnomon.storage import Entry, Phase, open_repository
from tests.conftest import make_repo_url
from tests.serve.test_explorer_pages import SCHEME, build_explorer_db, make_app

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium); "
                    "the explorer's browser test never lets Playwright download a browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(browser, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(base URL, database URL) of an explorer running in a background thread."""
    db_url = build_explorer_db(make_repo_url("sqlite", tmp_path_factory.mktemp("browser")))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(db_url), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", db_url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    # a fetch still running when a click leaves the page is aborted: that is no failure
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}")
            if req.failure != "net::ERR_ABORTED" else None)
    yield page
    context.close()
    assert not problems, problems


def _phases(db_url: str, scheme: str = SCHEME) -> list[Phase]:
    return [p for p in open_repository(db_url).phases() if p.scheme == scheme]


def _loaded(page, selector: str) -> bool:
    """Whether an <img> finished loading with a real picture."""
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


def test_pages_load_and_link_to_each_other(page, served):
    base, db_url = served
    page.goto(base + "/")
    assert page.title() == "campaigns · gnomon"
    page.wait_for_load_state("load")
    assert _loaded(page, "section.campaign img")
    page.get_by_role("link", name=f"Li-O ({SCHEME})").click()
    page.wait_for_url(f"**/systems/Li-O?scheme={SCHEME}")
    page.wait_for_load_state("load")
    assert page.locator("h1").inner_text() == "Li-O"
    page.locator("#hull summary").click()  # the static figure loads when opened
    page.wait_for_function("() => document.querySelector('#hull img').complete")
    assert _loaded(page, "#hull img")
    page.locator("#phases tbody tr.stable a", has_text="Li2O").first.click()
    page.wait_for_load_state("load")
    assert page.locator("h1").inner_text().startswith("Li2O ")
    assert page.locator("#sites tbody tr").count() == 12


def test_the_e_above_hull_filter_hides_rows_above_the_threshold(page, served):
    base, db_url = served
    phases = {p.id: p for p in _phases(db_url)}
    page.goto(f"{base}/systems/Li-O?scheme={SCHEME}&within=inf")
    rows = page.locator("#phases tbody tr")
    assert rows.count() == len(phases)
    energies = sorted({p.e_above_hull for p in phases.values()})
    threshold = (energies[1] + energies[2]) / 2  # some rows above it, some below
    page.get_by_label("Show phases with E above hull ≤").fill(f"{threshold:.6f}")
    shown = set()
    for i in range(rows.count()):
        row = rows.nth(i)
        if row.is_visible():
            shown.add(row.get_attribute("data-id"))
    expected = {pid for pid, p in phases.items() if p.e_above_hull <= threshold}
    assert shown == expected
    assert 0 < len(expected) < len(phases)
    assert (
        page.locator("#shown-count").inner_text()
        == f"{len(expected)} of {len(phases)} phases shown"
    )
    page.get_by_label("Show phases with E above hull ≤").fill("")
    assert all(rows.nth(i).is_visible() for i in range(rows.count()))


def test_columns_sort_both_ways(page, served):
    base, db_url = served
    phases = {p.id: p for p in _phases(db_url)}
    page.goto(f"{base}/systems/Li-O?scheme={SCHEME}&within=inf")

    def column(key: str) -> list:
        ids = page.eval_on_selector_all("#phases tbody tr", "rows => rows.map(r => r.dataset.id)")
        return [getattr(phases[i], key) for i in ids]

    header = page.locator('#phases th[data-key="formation_energy_per_atom"] button')
    header.click()
    assert column("formation_energy_per_atom") == sorted(column("formation_energy_per_atom"))
    header.click()
    assert column("formation_energy_per_atom") == sorted(
        column("formation_energy_per_atom"), reverse=True
    )
    page.locator('#phases th[data-key="formula"] button').click()
    formulas = column("reduced_formula")
    assert formulas == sorted(formulas, key=str.lower)
    assert page.locator('#phases th[data-key="formula"]').get_attribute("aria-sort") == "ascending"


def test_a_downloaded_cif_parses_with_pymatgen(page, served, tmp_path):
    base, db_url = served
    li2o = next(p for p in _phases(db_url) if p.reduced_formula == "Li2O" and p.is_stable)
    page.goto(f"{base}/phases/{li2o.id}")
    with page.expect_download() as info:
        page.get_by_role("link", name="CIF").click()
    download = info.value
    assert download.suggested_filename == f"Li2O_{li2o.id}.cif"
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    parsed = CifParser(path).parse_structures(primitive=False)[0]
    stored = Structure.from_dict(open_repository(db_url).get(Entry, li2o.id).structure)
    assert parsed.composition == stored.composition
    assert StructureMatcher().fit(parsed, stored)
