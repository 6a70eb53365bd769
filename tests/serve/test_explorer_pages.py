"""The explorer's pages, figures and downloads through FastAPI's TestClient (no browser).

The database is built the way gnomon builds one: entries made by ``make_entry`` and placed on
their hulls by the HullEngine, a campaign with rounds whose metrics a campaign would record.
"""

from __future__ import annotations

import html
import json
import re
from xml.etree import ElementTree

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifParser
from pymatgen.io.vasp import Poscar

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.serve.explorer import mount_explorer
from gnomon.serve.explorer.downloads import filename
from gnomon.serve.explorer.views import NEAR_STABLE
from gnomon.storage import Campaign, Entry, Phase, Round, open_repository
from tests.conftest import make_repo_url

SCHEME = "mlip-test-1.0"
OTHER = "qe-pbe-test"
REFS = {"Li": -1.9, "O": -4.9}  # eV/atom of the elemental references


def _cubic(species: list[str], coords: list[list[float]], a: float) -> Structure:
    return Structure(Lattice.cubic(a), species, coords)


def _structures() -> dict[str, Structure]:
    li2o = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.62), ["O", "Li"],
                                     [[0, 0, 0], [0.25, 0.25, 0.25]])
    return {
        "Li": Structure.from_spacegroup("Im-3m", Lattice.cubic(3.44), ["Li"], [[0, 0, 0]]),
        "O": _cubic(["O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]], 3.2),
        "Li2O": li2o,
        "Li2O2": _cubic(
            ["Li", "Li", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], 4.0
        ),
        "LiO2": _cubic(["Li", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5]], 3.6),
        "Li3O": _cubic(
            ["Li", "Li", "Li", "O"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], 4.1
        ),
        "LiO": _cubic(["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]], 3.0),
    }


# formation energies (eV/atom) chosen so the hull has stable, near-stable and far phases
FORMATION = {"Li2O": -2.0, "Li2O2": -1.7, "LiO2": -1.0, "Li3O": -1.2, "LiO": -1.55}


def build_explorer_db(url: str) -> str:
    """A small Li-O database in two energy schemes, with one campaign of two rounds."""
    repo = open_repository(url)
    structures = _structures()
    entries = []
    for scheme, shift in ((SCHEME, 0.0), (OTHER, -0.3)):
        for name, s in structures.items():
            comp = s.composition
            epa = sum(REFS[el.symbol] * amt for el, amt in comp.items()) / comp.num_atoms
            epa += FORMATION.get(name, 0.0) + (shift if name not in REFS else 0.0)
            entries.append(make_entry(comp, epa * comp.num_atoms, scheme, structure=s,
                                      source=f"test <{name}>", campaign="demo", round=1))
    # an energy without a structure (imported from a table)
    entries.append(make_entry("Li4O3", -3.4 * 7, SCHEME, source="table"))
    HullEngine(repo).ingest(entries)
    repo.put([Campaign(id="demo", name="demo", config={"elements": ["O", "Li"]}, status="done",
                       rounds_done=2, stop_reason="budget <b>spent</b>")])
    repo.put([
        Round(id=Round.key("demo", 0), campaign="demo", index=0, metrics={
            "policy": "random", "generated": 40, "unique": 31, "screened": 31, "selected": 6,
            "relaxed": 6, "failed": 0, "hit_rate": 0.1667, "hit_rate_25meV": 0.3333,
            "new_stable": 1, "mae": None}),
        Round(id=Round.key("demo", 1), campaign="demo", index=1, metrics={
            "policy": "ucb", "generated": 50, "unique": 44, "screened": 44, "selected": 6,
            "relaxed": 5, "failed": 1, "hit_rate": 0.4, "hit_rate_25meV": 0.6, "new_stable": 2,
            "mae": 0.081}),
    ])
    repo.close()
    return url


def make_app(url: str) -> FastAPI:
    app = FastAPI()
    mount_explorer(app, url)
    return app


@pytest.fixture(scope="module")
def db_url(tmp_path_factory) -> str:
    return build_explorer_db(make_repo_url("sqlite", tmp_path_factory.mktemp("explorer")))


@pytest.fixture(scope="module")
def client(db_url):
    with TestClient(make_app(db_url)) as c:
        yield c


@pytest.fixture(scope="module")
def phases(db_url) -> list[Phase]:
    return open_repository(db_url).phases()


def _rows(page: str) -> list[tuple[str, str]]:
    """The system page's phase rows as (id, e_above_hull) in page order."""
    return [(html.unescape(m.group(1)), m.group(2))
            for m in re.finditer(r'<tr data-id="([^"]*)" data-e-above-hull="([^"]*)"', page)]


def _by_formula(phases: list[Phase], formula: str, scheme: str = SCHEME) -> Phase:
    found = [p for p in phases if p.reduced_formula == formula and p.scheme == scheme]
    return min(found, key=lambda p: p.e_above_hull)


def test_campaigns_page_shows_each_round_and_links_the_systems(client, db_url):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    rounds = sorted(
        open_repository(db_url).query(Round, {"campaign": "demo"}), key=lambda r: r.index
    )
    for r in rounds:
        assert f"<td class=\"num\">{r.metrics['generated']}</td>" in page.text
        assert f"{r.metrics['hit_rate']:.3f}" in page.text
    assert "0.081" in page.text  # round 1's MAE; round 0 had none and shows a dash
    for scheme in (SCHEME, OTHER):
        assert f'href="/systems/Li-O?scheme={scheme}"' in page.text
    for system in ("Li", "O", "Li-O"):
        assert f'href="/systems/{system}"' in page.text
    assert 'src="/campaigns/demo/metrics.svg"' in page.text


def test_metric_charts_are_svg_of_the_stored_rounds(client):
    chart = client.get("/campaigns/demo/metrics.svg")
    assert chart.status_code == 200
    assert chart.headers["content-type"] == "image/svg+xml"
    root = ElementTree.fromstring(chart.content)
    assert root.tag.endswith("svg")
    text = chart.text
    for label in ("hit rate", "MAE", "generated", "new stable"):
        assert label in text
    assert client.get("/campaigns/nope/metrics.svg").status_code == 404


def test_system_page_lists_one_scheme_within_the_near_stable_window(client, phases):
    for scheme in (SCHEME, OTHER):
        page = client.get("/systems/Li-O", params={"scheme": scheme})
        assert page.status_code == 200
        rows = _rows(page.text)
        expected = {p.id: p for p in phases if p.scheme == scheme and p.e_above_hull <= NEAR_STABLE}
        assert {rid for rid, _ in rows} == set(expected)
        for rid, e in rows:
            assert float(e) == pytest.approx(expected[rid].e_above_hull, abs=1e-12)
        assert f'src="/systems/Li-O/hull.svg?scheme={scheme}"' in page.text
    everything = client.get("/systems/Li-O", params={"scheme": SCHEME, "within": "inf"})
    assert {rid for rid, _ in _rows(everything.text)} == {
        p.id for p in phases if p.scheme == SCHEME
    }
    tight = client.get("/systems/Li-O", params={"scheme": SCHEME, "within": 0})
    assert {rid for rid, _ in _rows(tight.text)} == {
        p.id for p in phases if p.scheme == SCHEME and p.is_stable
    }


def test_system_page_defaults_to_one_scheme_and_offers_the_others(client):
    page = client.get("/systems/Li-O").text
    assert 'class="current" aria-current="page">' + SCHEME in page
    assert f'href="/systems/Li-O?scheme={OTHER}"' in page


def test_system_addresses_are_canonical_and_bad_ones_are_explained(client):
    moved = client.get("/systems/O-Li", params={"scheme": OTHER}, follow_redirects=False)
    assert moved.status_code in (307, 308)
    assert moved.headers["location"] == f"/systems/Li-O?scheme={OTHER}"
    found = client.get("/systems", params={"chemsys": "O,Li"}, follow_redirects=False)
    assert found.headers["location"] == "/systems/Li-O"
    bad = client.get("/systems/Li-Xx")
    assert bad.status_code == 400 and "Xx" in bad.text
    assert client.get("/systems/Li-O", params={"scheme": "vasp-pbe-nothing"}).status_code == 404
    assert client.get("/systems/Na-Cl").status_code == 404
    assert client.get("/systems/Li-O", params={"within": -1}).status_code == 422


def test_hull_diagrams_are_drawn_per_scheme(client):
    svgs = {}
    for scheme in (SCHEME, OTHER):
        r = client.get("/systems/Li-O/hull.svg", params={"scheme": scheme})
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/svg+xml"
        ElementTree.fromstring(r.content)
        svgs[scheme] = r.text
    assert svgs[SCHEME] != svgs[OTHER]  # different entries, different hulls
    assert client.get("/systems/Li/hull.svg", params={"scheme": SCHEME}).status_code == 400
    assert client.get("/systems/Li-O/hull.svg", params={"scheme": "nothing"}).status_code == 404


def test_phase_page_shows_the_structure_and_offers_downloads(client, phases):
    li2o = _by_formula(phases, "Li2O")
    page = client.get(f"/phases/{li2o.id}")
    assert page.status_code == 200
    text = page.text
    assert "Fm-3m (225)" in text
    assert len(re.findall(r"<tr><td class=\"num\">\d+</td><td>(?:Li|O)</td>", text)) == 12
    for fmt in ("cif", "poscar", "json"):
        assert f'href="/phases/{li2o.id}/download/{fmt}"' in text
    assert f"{li2o.formation_energy_per_atom:.4f}" in text
    assert client.get("/phases/no-such-phase").status_code == 404


def test_downloads_parse_back_to_the_stored_structure(client, phases, db_url):
    li2o = _by_formula(phases, "Li2O")
    stored = Structure.from_dict(open_repository(db_url).get(Entry, li2o.id).structure)
    readers = {
        "cif": lambda t: CifParser.from_str(t).parse_structures(primitive=False)[0],
        "poscar": lambda t: Poscar.from_str(t).structure,
        "json": lambda t: Structure.from_dict(json.loads(t)),
    }
    for fmt, read in readers.items():
        r = client.get(f"/phases/{li2o.id}/download/{fmt}")
        assert r.status_code == 200, r.text
        disposition = r.headers["content-disposition"]
        assert disposition.startswith("attachment; filename=")
        assert li2o.id in disposition
        got = read(r.text)
        assert got.composition == stored.composition
        assert StructureMatcher().fit(got, stored)
    assert client.get(f"/phases/{li2o.id}/download/xyz").status_code == 404


def test_a_phase_without_a_structure_says_so(client, phases):
    bare = _by_formula(phases, "Li4O3")
    page = client.get(f"/phases/{bare.id}")
    assert page.status_code == 200
    assert "No structure is stored" in page.text
    assert "/download/" not in page.text
    r = client.get(f"/phases/{bare.id}/download/cif")
    assert r.status_code == 404 and "no stored structure" in r.text


def test_stored_text_is_escaped(client, phases):
    home = client.get("/").text
    assert "budget &lt;b&gt;spent&lt;/b&gt;" in home and "<b>spent</b>" not in home
    system = client.get("/systems/Li-O", params={"scheme": SCHEME}).text
    assert "test &lt;Li2O&gt;" in system and "test <Li2O>" not in system
    phase = client.get(f"/phases/{_by_formula(phases, 'Li2O').id}").text
    assert "test &lt;Li2O&gt;" in phase and "test <Li2O>" not in phase
    error = client.get("/systems/<img src=x onerror=alert(1)>")
    assert error.status_code == 400
    assert "&lt;img src=x" in error.text and "<img src=x" not in error.text


def test_download_names_are_safe_in_a_header_and_on_disk():
    assert filename("LiMnO2", "0a1b", "cif") == "LiMnO2_0a1b.cif"
    assert filename("LiMnO2", "0a1b", "poscar") == "POSCAR_LiMnO2_0a1b.vasp"
    name = filename("Li2O", 'x"; evil\r\n/../y', "json")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name) and name.endswith(".json")


def test_pages_fetch_nothing_from_elsewhere(client, phases):
    pages = ["/", "/systems/Li-O", f"/phases/{_by_formula(phases, 'Li2O').id}"]
    for path in pages:
        text = client.get(path).text
        for attr, url in re.findall(r'(src|href|action)="([^"]*)"', text):
            assert url.startswith(("/", "?", "#", "data:")), (path, url)
            if attr != "action" and url.startswith("/") and "/download/" not in url:
                assert client.get(html.unescape(url)).status_code == 200, url
    assert (
        client.get("/explorer/assets/explorer.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert (
        client.get("/explorer/assets/explorer.css").headers["content-type"].startswith("text/css")
    )


def test_an_empty_database_has_a_campaigns_page(tmp_path):
    with TestClient(make_app(f"sqlite:///{tmp_path / 'empty.db'}")) as c:
        page = c.get("/")
        assert page.status_code == 200
        assert "No campaigns in this database yet" in page.text
        assert c.get("/systems/Li-O").status_code == 404


def test_the_pages_read_a_mongodb_repository_too(tmp_path):
    url = build_explorer_db(make_repo_url("mongomock", tmp_path))
    phases = open_repository(url).phases()
    with TestClient(make_app(url)) as c:
        assert "budget &lt;b&gt;spent&lt;/b&gt;" in c.get("/").text
        rows = _rows(c.get("/systems/Li-O", params={"scheme": OTHER, "within": "inf"}).text)
        assert {rid for rid, _ in rows} == {p.id for p in phases if p.scheme == OTHER}
        li2o = _by_formula(phases, "Li2O", OTHER)
        assert "Fm-3m (225)" in c.get(f"/phases/{li2o.id}").text
        assert c.get(f"/phases/{li2o.id}/download/cif").status_code == 200


def test_gnomon_serve_app_serves_the_explorer_beside_optimade(db_url):
    from gnomon.serve.app import create_app

    with TestClient(create_app(db_url)) as c:
        home = c.get("/")
        assert home.status_code == 200 and "<h1>Campaigns</h1>" in home.text
        assert 'href="/v1/info"' in home.text  # the header links the API when the app has one
        assert c.get("/v1/info").status_code == 200
        assert c.get("/systems/Li-O").status_code == 200
