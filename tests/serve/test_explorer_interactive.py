"""The explorer's interactive pages in a real browser: Debian's chromium driven by Playwright.

``gnomon serve``'s whole app (OPTIMADE API and explorer) runs under uvicorn on a loopback port
over the database of tests/serve/explorer_db.py; the browser hovers and clicks the hull,
drags the 3D structure, reads the XRD table, searches, and downloads a system's zip, as a
person would. Every request the browser makes is logged, and each test ends by checking none
left 127.0.0.1 and no script error or refused resource was reported.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Structure

from gnomon.pipeline.spacegroup import spacegroup_of
from gnomon.storage import Entry, Phase, open_repository
from tests.conftest import make_repo_url
from tests.serve import explorer_db
from tests.serve.explorer_db import SCHEME
from tests.serve.serve_helpers import live_server

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium); "
                    "the explorer's browser tests never let Playwright download a browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def served(browser, tmp_path_factory):
    """(base URL, database URL) of gnomon serve's app in a background thread."""
    db_url = explorer_db.build(make_repo_url("sqlite", tmp_path_factory.mktemp("interactive")))
    with live_server(db_url) as base:
        yield base, db_url


@pytest.fixture
def page(browser, served):
    """A page whose every request is logged; the test fails if one left the server, or if the
    page reported a script error, a refused resource or a failed request."""
    base, _ = served
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    # a fetch still running when a click leaves the page is aborted: that is no failure
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}")
            if req.failure != "net::ERR_ABORTED" else None)
    yield page
    context.close()
    assert requests, "the test made no request"
    assert all(url.startswith(base + "/") for url in requests), [
        u for u in requests if not u.startswith(base + "/")]
    assert base.startswith("http://127.0.0.1:")
    assert not problems, problems


def _phase(db_url: str, formula: str, stable: bool = True) -> Phase:
    return next(p for p in open_repository(db_url).phases() if p.reduced_formula == formula
                and p.scheme == SCHEME and p.is_stable == stable)


def _drawn(page, selector: str) -> None:
    page.wait_for_selector(f'{selector}[data-ready="1"]', timeout=60_000)


POINT_CENTRE = """([plot, id]) => {
  const gd = document.querySelector(plot);
  for (const trace of gd._fullData) {
    const at = (trace.customdata || []).findIndex(cd => cd[cd.length - 1] === id);
    if (at < 0) continue;
    const point = gd.querySelectorAll(`.trace${trace.uid} .points path.point`)[at];
    const box = point.getBoundingClientRect();
    return [box.x + box.width / 2, box.y + box.height / 2];
  }
  return null;
}"""


def test_hovering_a_hull_point_shows_its_tooltip_and_a_click_opens_its_page(page, served):
    base, db_url = served
    limn2o4 = _phase(db_url, "LiMn2O4")
    page.goto(f"{base}/systems/Li-Mn-O?scheme={SCHEME}")
    _drawn(page, "#hull-plot")
    page.locator("#hull-plot").scroll_into_view_if_needed()
    x, y = page.evaluate(POINT_CENTRE, ["#hull-plot", limn2o4.id])
    page.mouse.move(x, y)
    tip = page.locator("#hull-plot .hoverlayer .hovertext")
    tip.wait_for(timeout=10_000)
    text = tip.text_content().replace("\u200b", "")  # plotly's breaks around subscripts
    stored = open_repository(db_url).get(Entry, limn2o4.id).structure
    group = spacegroup_of(Structure.from_dict(stored))
    for part in ("LiMn2O4", f"space group: {group}", "E above hull: 0.000", "relax <LiMn2O4>",
                 "campaign: alpha"):
        assert part in text, text
    page.mouse.click(x, y)
    page.wait_for_url(f"**/phases/{limn2o4.id}")
    assert page.locator("h1").inner_text().startswith("LiMn2O4 ")


def test_the_hull_labels_on_the_page_do_not_overlap(page, served):
    base, _ = served
    page.goto(f"{base}/systems/Li-Mn-O?scheme={SCHEME}")
    _drawn(page, "#hull-plot")
    boxes = page.eval_on_selector_all(
        "#hull-plot .textpoint text",
        "els => els.filter(e => e.textContent).map(e => { const b = e.getBoundingClientRect();"
        " return [e.textContent, b.x, b.y, b.right, b.bottom]; })")
    names = {b[0].replace("\u200b", "") for b in boxes}
    assert {"LiMnO2", "LiMn2O4", "Mn3O4"} <= names, names
    for i, (n1, x0, y0, x1, y1) in enumerate(boxes):
        for n2, u0, v0, u1, v1 in boxes[i + 1:]:
            assert not (x0 < u1 and u0 < x1 and y0 < v1 and v0 < y1), (n1, n2)


CAMERA = """sel => { const eye = document.querySelector(sel)._fullLayout.scene._scene
                     .getCamera().eye; return [eye.x, eye.y, eye.z]; }"""


def test_the_structure_viewer_renders_a_canvas_and_rotates_on_drag(page, served):
    base, db_url = served
    nacl = _phase(db_url, "NaCl")
    page.goto(f"{base}/phases/{nacl.id}")
    _drawn(page, "#structure-plot")
    canvas = page.locator("#structure-plot canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box["width"] > 200 and box["height"] > 200
    before = page.evaluate(CAMERA, "#structure-plot")
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(cx + 8 * step, cy + 3 * step)
    page.mouse.up()
    after = page.evaluate(CAMERA, "#structure-plot")
    assert max(abs(a - b) for a, b in zip(before, after, strict=True)) > 0.05, (before, after)
    legend = page.eval_on_selector_all("#structure-plot .legendtext",
                                       "els => els.map(e => e.textContent)")
    assert {"Na", "Cl"} <= set(legend)
    atoms = "sel => document.querySelector(sel).data.filter(t => t.mode === 'markers')" \
            ".reduce((n, t) => n + t.x.length, 0)"
    assert page.evaluate(atoms, "#structure-plot") == 27
    page.get_by_role("button", name="primitive cell").click()
    page.wait_for_function(f"() => ({atoms})('#structure-plot') < 27")
    assert page.get_by_role("button", name="primitive cell").get_attribute("aria-pressed") \
        == "true"


def test_the_xrd_peaks_of_rock_salt_match_pymatgen(page, served):
    base, db_url = served
    nacl = _phase(db_url, "NaCl")
    stored = Structure.from_dict(open_repository(db_url).get(Entry, nacl.id).structure)
    page.goto(f"{base}/phases/{nacl.id}")
    _drawn(page, "#xrd-plot")
    for wavelength in ("CuKa", "MoKa"):
        if wavelength != "CuKa":
            page.get_by_label("wavelength").select_option(wavelength)
            page.get_by_role("button", name="show").last.click()
            page.wait_for_url(f"**wavelength={wavelength}*")
            _drawn(page, "#xrd-plot")
        rows = page.eval_on_selector_all(
            "#xrd-peaks tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))")
        ref = XRDCalculator(wavelength=wavelength).get_pattern(stored, two_theta_range=(5, 90))
        strongest = sorted(zip(ref.y, ref.x, strict=True), key=lambda p: (-p[0], p[1]))[:10]
        assert len(rows) == len(strongest)
        for row, (intensity, two_theta) in zip(rows, strongest, strict=True):
            assert float(row[0]) == pytest.approx(two_theta, abs=0.01)
            assert float(row[1]) == pytest.approx(intensity, abs=0.1)


def test_a_search_for_li_and_o_returns_the_right_phases(page, served):
    base, db_url = served
    expected = {e.id for e in open_repository(db_url).query(Entry)
                if e.structure is not None and {"Li", "O"} <= set(e.elements)}
    page.goto(f"{base}/search")
    page.get_by_label("filter").fill('elements HAS ALL "Li","O"')
    page.get_by_label("filter").press("Enter")
    page.wait_for_selector("#results")
    ids = page.eval_on_selector_all("#results tbody tr", "rows => rows.map(r => r.dataset.id)")
    assert set(ids) == expected
    assert page.locator("section.api code").first.inner_text() == 'elements HAS ALL "Li","O"'
    page.wait_for_selector('#results[data-facts="ready"]', timeout=60_000)
    page.locator("section.api a").click()
    answer = page.evaluate("() => JSON.parse(document.body.innerText)")
    assert {d["id"] for d in answer["data"]} == expected


def test_the_bulk_zip_contains_every_phase_of_the_system(page, served, tmp_path):
    base, db_url = served
    page.goto(f"{base}/systems/Li-Mn-O?scheme={SCHEME}&within=inf")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download the").click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert path.name == f"Li-Mn-O_{SCHEME}.zip"
    archive = zipfile.ZipFile(path)
    rows = list(csv.DictReader(io.StringIO(archive.read("energies.csv").decode())))
    subsystems = {"Li", "Mn", "O", "Li-Mn", "Li-O", "Mn-O", "Li-Mn-O"}
    expected = {p.id for p in open_repository(db_url).phases()
                if p.scheme == SCHEME and p.chemsys in subsystems}
    assert {r["id"] for r in rows} == expected
    assert all(r["cif"] in archive.namelist() for r in rows if r["cif"])


def test_keyboard_alt_text_and_a_phone_width_window(page, served):
    base, db_url = served
    page.goto(f"{base}/systems/Li-Mn-O?scheme={SCHEME}")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to the content"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    sort = page.locator('#phases th[data-key="e_above_hull"] button')
    sort.focus()
    page.keyboard.press("Enter")
    assert page.locator('#phases th[data-key="e_above_hull"]').get_attribute("aria-sort") \
        == "ascending"
    _drawn(page, "#hull-plot")
    for path in (f"/systems/Li-Mn-O?scheme={SCHEME}", f"/phases/{_phase(db_url, 'NaCl').id}",
                 "/search?elements=Li", "/"):
        page.goto(base + path)
        labels = page.eval_on_selector_all(
            "img, [role=img]", "els => els.map(e => e.getAttribute('alt') || "
                               "e.getAttribute('aria-label') || '')")
        assert all(len(label) > 10 for label in labels), (path, labels)
        assert labels or path.startswith("/search"), path
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (f"/systems/Li-Mn-O?scheme={SCHEME}", f"/phases/{_phase(db_url, 'NaCl').id}",
                 "/search?elements=Li"):
        page.goto(base + path)
        page.wait_for_load_state("load")
        for plot in page.locator("[data-figure]").all():
            plot.wait_for(state="attached")
        page.wait_for_function("() => [...document.querySelectorAll('[data-figure]')]"
                               ".every(e => e.dataset.ready === '1')", timeout=60_000)
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        assert wide <= 392, (path, wide)  # nothing wider than the phone; tables scroll inside
