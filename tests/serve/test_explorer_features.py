"""The explorer's interactive hull, 3D structure, XRD, lineage, search, archives and campaign
pages through FastAPI's TestClient, on a database built as a campaign builds one
(tests/serve/explorer_db.py). The browser side is tests/serve/test_explorer_interactive.py."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import zipfile
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plotly.offline import get_plotlyjs_version
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

from gnomon.serve.app import create_app
from gnomon.serve.explorer import (
    hull_plot,
    search,
    static_files,
    structure_plot,
    views,
    xrd,
)
from gnomon.serve.explorer.labels import label_box, place_labels, text_size
from gnomon.serve.explorer.structure_plot import jmol_colours
from gnomon.serve.explorer.templates import fmt
from gnomon.storage import Entry, Phase, open_repository
from tests.conftest import make_repo_url
from tests.serve import explorer_db
from tests.serve.explorer_db import DFT, SCHEME


@pytest.fixture(scope="module")
def db_url(tmp_path_factory) -> str:
    return explorer_db.build(make_repo_url("sqlite", tmp_path_factory.mktemp("features")))


@pytest.fixture(scope="module")
def client(db_url):
    with TestClient(create_app(db_url)) as c:
        yield c


@pytest.fixture(scope="module")
def phases(db_url) -> list[Phase]:
    return open_repository(db_url).phases()


def _phase(phases, formula: str, scheme: str = SCHEME, stable: bool | None = True) -> Phase:
    return next(p for p in phases if p.reduced_formula == formula and p.scheme == scheme
                and (stable is None or p.is_stable == stable))


def _markers(figure: dict) -> dict[str, dict]:
    """What each marker of a hull figure says (customdata, label, trace), by phase id."""
    out = {}
    for trace in figure["data"]:
        if trace.get("name") in ("on the hull", "above the hull"):
            texts = trace.get("text") or [""] * len(trace["customdata"])
            for cd, text in zip(trace["customdata"], texts, strict=True):
                out[cd[-1]] = {"url": cd[0], "formula": cd[1], "spacegroup": cd[2],
                               "e_above_hull": cd[3], "source": cd[4], "campaign": cd[5],
                               "note": cd[6],
                               "trace": trace["name"], "text": text}
    return out


# -- the interactive hull ----------------------------------------------------------------------
@pytest.mark.parametrize("chemsys", ["Li-O", "Li-Mn-O", "Li-Mn-Na-O"])
def test_the_hull_figure_has_every_phase_of_the_window_linked_to_its_page(client, phases,
                                                                           chemsys):
    elements = set(chemsys.split("-"))
    for within in ("0.12", "inf"):
        r = client.get(f"/systems/{chemsys}/hull.json", params={"scheme": SCHEME,
                                                                 "within": within})
        assert r.status_code == 200, r.text
        marks = _markers(r.json())
        expected = {p.id: p for p in phases if p.scheme == SCHEME
                    and set(p.chemsys.split("-")) <= elements
                    and p.e_above_hull <= float(within) + 1e-9}
        assert set(marks) == set(expected)
        for pid, m in marks.items():
            p = expected[pid]
            assert m["url"] == f"/phases/{pid}"
            assert m["trace"] == ("on the hull" if p.is_stable else "above the hull")
            assert m["e_above_hull"] == f"{p.e_above_hull:.3f}"
            assert re.sub(r"</?sub>", "", m["formula"]) == p.reduced_formula


def test_hull_hover_text_carries_space_group_source_and_campaign_escaped(client, phases):
    marks = _markers(client.get("/systems/Li-Mn-O/hull.json", params={"scheme": SCHEME}).json())
    limno2 = marks[_phase(phases, "LiMnO2").id]
    assert limno2["spacegroup"] == "R-3m (166)"
    assert limno2["source"] == "relax &lt;LiMnO2&gt;" and limno2["campaign"] == "alpha"
    assert marks[_phase(phases, "MnO").id]["campaign"] == "–"
    assert "1 other polymorph" in limno2["note"] and marks[_phase(phases, "MnO").id]["note"] == ""


def test_the_crowded_middle_of_li_mn_o_is_labelled_without_overlap(client, phases):
    marks = _markers(client.get("/systems/Li-Mn-O/hull.json", params={"scheme": SCHEME}).json())
    labelled = {re.sub(r"</?sub>", "", m["text"]) for m in marks.values() if m["text"]}
    assert {"LiMnO2", "LiMn2O4", "Mn3O4"} <= labelled
    assert not labelled & {"Li", "Mn", "O2"}  # the corners are named by the axes


def test_labels_never_overlap_even_when_points_crowd():
    points = [(100 + 7 * (i % 5), 100 + 5 * (i // 5)) for i in range(25)]
    texts = [f"Li{i}Mn2O4" for i in range(25)]
    where = place_labels(points, texts, font_px=13, marker_px=6)
    boxes = [label_box(x, y, text_size(t, 13), pos, 6)
             for (x, y), t, pos in zip(points, texts, where, strict=True) if pos]
    assert boxes and len(boxes) < len(points)  # some left off, to hover
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_hull_json_errors_are_plain_words(client):
    assert client.get("/systems/Li/hull.json", params={"scheme": SCHEME}).status_code == 400
    assert client.get("/systems/Li-Xx/hull.json").status_code == 400
    assert client.get("/systems/Li-O/hull.json", params={"scheme": "nope"}).status_code == 404
    assert client.get("/systems/Li-O/hull.json", params={"within": "-1"}).status_code in (400, 422)


def test_system_page_shows_the_interactive_hull_space_groups_and_a_zip_link(client, phases):
    page = client.get("/systems/Li-Mn-O", params={"scheme": SCHEME}).text
    assert 'data-figure="/systems/Li-Mn-O/hull.json?scheme=' in page
    assert 'src="/explorer/assets/plotly-' in page and 'src="/explorer/assets/plots.js"' in page
    row = re.search(rf'<tr data-id="{_phase(phases, "LiMnO2").id}".*?</tr>', page, re.S).group(0)
    assert 'data-value="166">R-3m (166)</td>' in row
    assert 'href="/systems/Li-Mn-O/phases.zip?scheme=' in page
    assert 'data-facts-src="/systems/Li-Mn-O/novelty.json?scheme=' in page  # not checked yet


# -- the structure viewer ----------------------------------------------------------------------
def test_the_3d_view_of_rock_salt_has_the_cell_its_atoms_and_their_bonds(client, phases):
    nacl = _phase(phases, "NaCl")
    fig = client.get(f"/phases/{nacl.id}/structure.json").json()
    atoms = {t["name"]: t for t in fig["data"] if t["mode"] == "markers"}
    assert set(atoms) == {"Na", "Cl"}  # the legend: one entry per element
    # the conventional cell with the atoms on its faces, edges and corners
    counts = sorted(len(t["x"]) for t in atoms.values())
    assert counts == [13, 14]
    assert atoms["Na"]["marker"]["color"] == jmol_colours()["Na"]
    assert atoms["Na"]["marker"]["size"] > atoms["Cl"]["marker"]["size"]  # Na is larger
    cell = next(t for t in fig["data"] if t["name"] == "unit cell")
    assert cell["x"].count(None) == 12  # twelve edges
    bonds = [t for t in fig["data"] if t["name"].endswith("bonds")]
    assert {t["legendgroup"] for t in bonds} == {"Na", "Cl"}
    for t in bonds:  # half-bonds of Na-Cl: 2.82 / 2 Å
        for i in range(0, len(t["x"]), 3):
            d = sum((t[a][i + 1] - t[a][i]) ** 2 for a in "xyz") ** 0.5
            assert d == pytest.approx(5.64 / 4, abs=1e-6)
    prim = client.get(f"/phases/{nacl.id}/structure.json", params={"cell": "primitive"}).json()
    assert fig["layout"]["meta"]["nsites"] == 8 and prim["layout"]["meta"]["nsites"] == 2
    assert client.get(f"/phases/{nacl.id}/structure.json",
                      params={"cell": "weird"}).status_code == 400


def test_site_tables_print_no_negative_zero(client, db_url, tmp_path):
    assert fmt(-1e-9, 5) == "0.00000" and fmt(-0.0, 2) == "0.00" and fmt(-0.004, 2) == "0.00"
    assert fmt(-0.006, 2) == "-0.01" and fmt(-0.0) == "0"
    li2o = _phase(open_repository(db_url).phases(), "Li2O")
    page = client.get(f"/phases/{li2o.id}").text
    assert "-0.0000" not in page and "-0.000<" not in page


# -- XRD ---------------------------------------------------------------------------------------
def test_xrd_csv_of_rock_salt_is_pymatgens_pattern(client, phases, db_url):
    nacl = _phase(phases, "NaCl")
    stored = Structure.from_dict(open_repository(db_url).get(Entry, nacl.id).structure)
    for wavelength in ("CuKa", "MoKa", "1.2"):
        r = client.get(f"/phases/{nacl.id}/xrd.csv", params={"wavelength": wavelength})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(line for line in r.text.splitlines()
                                   if not line.startswith("#")))
        calc = XRDCalculator(wavelength=float(wavelength) if wavelength[0].isdigit()
                             else wavelength)
        ref = calc.get_pattern(stored, two_theta_range=(5, 90))
        assert [float(x["two_theta_deg"]) for x in rows] == pytest.approx(list(ref.x), abs=0.01)
        assert [float(x["intensity"]) for x in rows] == pytest.approx(list(ref.y), abs=0.01)
    page = client.get(f"/phases/{nacl.id}").text
    assert "31.7" in page and "(2 0 0)" in page  # the strongest rock-salt peak, tabled
    bad = client.get(f"/phases/{nacl.id}/xrd.json", params={"wavelength": "Xx"})
    assert bad.status_code == 400 and "Xx" in bad.text
    shown = client.get(f"/phases/{nacl.id}", params={"wavelength": "Xx"})
    assert shown.status_code == 200 and "neither an X-ray line" in shown.text


# -- lineage and novelty -----------------------------------------------------------------------
def test_a_dft_phase_shows_its_lineage_back_to_the_candidate(client, phases):
    dft = _phase(phases, "LiMn2O4", DFT)
    mlip = _phase(phases, "LiMn2O4")
    mno = _phase(phases, "MnO")
    page = client.get(f"/phases/{dft.id}").text
    order = [page.index(s) for s in (
        "candidate cand-LiMn2O4</h3>", "screened by the model ensemble",
        "calculation cand-LiMn2O4:mlip", f"entry {mlip.id} ({SCHEME})",
        "candidate cand-LiMn2O4-dft</h3>", "calculation cand-LiMn2O4-dft:qe",
        f"this entry ({DFT})")]
    assert order == sorted(order)
    assert f'<a href="/phases/{mno.id}">MnO ({mno.id})</a>' in page  # the SAPS template
    assert "Co → Mn" in page and "pw.x 7.2" in page and "slurm" in page
    assert f'<a href="/phases/{mlip.id}">{mlip.id}</a>' in page
    imported = client.get(f"/phases/{_phase(phases, 'NaCl').id}").text
    assert "its energy was imported" in imported


@pytest.mark.slow  # amd's numba kernels compile on first use
def test_novelty_of_a_discovery_and_of_an_imported_phase(client, phases):
    found = client.get(f"/phases/{_phase(phases, 'LiMnO2').id}/novelty.json").json()
    assert found["novelty"] in ("new", "known") and found["amd"] is not None
    imported = client.get(f"/phases/{_phase(phases, 'NaCl').id}/novelty.json").json()
    assert imported["novelty"] == "imported" and imported["verdict"].startswith("imported:")
    table = client.get("/systems/Li-Mn-O/novelty.json", params={"scheme": SCHEME}).json()
    assert table[_phase(phases, "MnO").id]["novelty"] == "imported"
    assert table[_phase(phases, "LiMnO2").id]["novelty"] == found["novelty"]
    page = client.get(f"/phases/{_phase(phases, 'LiMnO2').id}").text  # now remembered
    assert "data-novelty-src" not in page and html.escape(found["verdict"]) in page


# -- search ------------------------------------------------------------------------------------
def _ids(page: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', page)


def test_search_by_elements_runs_and_shows_the_optimade_filter(client, db_url):
    r = client.get("/search", params={"elements": "Li, O"})
    assert r.status_code == 200
    entries = [e for e in open_repository(db_url).query(Entry) if e.structure is not None]
    expected = {e.id for e in entries if {"Li", "O"} <= set(e.elements)}
    assert set(_ids(r.text)) == expected
    assert '<code>elements HAS ALL "Li","O"</code>' in html.unescape(r.text)
    api = re.search(r'<a href="(/v1/structures\?[^"]+)"', r.text).group(1)
    query = parse_qs(urlsplit(html.unescape(api)).query)
    assert query["filter"] == ['elements HAS ALL "Li","O"']
    served = client.get(html.unescape(api)).json()
    assert {d["id"] for d in served["data"]} == expected


@pytest.mark.parametrize(("params", "want"), [
    ({"elements": "Li,O", "mode": "only"}, lambda e, p: set(e.elements) <= {"Li", "O"}
     and set(e.elements) & {"Li", "O"}),
    ({"elements": "Na Cl", "mode": "any"}, lambda e, p: bool({"Na", "Cl"} & set(e.elements))),
    ({"nelements_min": "3"}, lambda e, p: len(e.elements) >= 3),
    ({"nelements_min": "2", "nelements_max": "2"}, lambda e, p: len(e.elements) == 2),
    ({"max_e_above_hull": "0.12"}, lambda e, p: p is not None and p.e_above_hull <= 0.12),
    ({"stable": "1", "elements": "Mn"}, lambda e, p: p.is_stable and "Mn" in e.elements),
    ({"campaign": "alpha"}, lambda e, p: e.campaign == "alpha"),
    ({"scheme": DFT}, lambda e, p: e.scheme == DFT),
    ({"formula": "MnLiO2"}, lambda e, p: e.reduced_formula == "LiMnO2"),
    ({"filter": 'elements HAS ALL "Li","O"'}, lambda e, p: {"Li", "O"} <= set(e.elements)),
])
def test_each_search_field_finds_the_right_phases(client, db_url, params, want):
    repo = open_repository(db_url)
    phases = {p.id: p for p in repo.query(Phase)}
    expected = {e.id for e in repo.query(Entry) if e.structure is not None
                and want(e, phases.get(e.id))}
    r = client.get("/search", params=params)
    assert r.status_code == 200, r.text
    assert set(_ids(r.text)) == expected and expected


def test_search_results_sort_and_page_through_the_api(client, db_url, monkeypatch):
    monkeypatch.setattr(search, "PER_PAGE", 4)
    repo = open_repository(db_url)
    phases = {p.id: p for p in repo.query(Phase)}
    seen = []
    for n in (1, 2, 3, 4, 5, 6, 7):
        page = client.get("/search", params={"sort": "e_above_hull", "descending": "1",
                                             "page": str(n)}).text
        seen += _ids(page)
    energies = [phases[i].e_above_hull for i in seen]
    assert energies == sorted(energies, reverse=True)
    assert len(seen) == len(set(seen)) == sum(1 for e in repo.query(Entry) if e.structure)
    first = client.get("/search", params={"sort": "nsites"}).text
    assert 'href="/search?sort=nsites&amp;descending=1"' in first  # the header sorts back


@pytest.mark.parametrize("params", [
    {"elements": "Li,Xx"}, {"formula": "Li2O("}, {"nelements_min": "two"},
    {"nelements_min": "3", "nelements_max": "2"}, {"max_e_above_hull": "-1"},
    {"max_e_above_hull": "nan"}, {"mode": "some"}, {"sort": "colour"}, {"novelty": "fresh"},
    {"filter": "elements HAS ALL ((("}, {"filter": "nelements=1 AND"}, {"page": "0"},
    {"filter": 'elements:elements_ratios HAS "Li":>0.5'},
])
def test_bad_search_input_gets_a_clear_400(client, params):
    r = client.get("/search", params=params)
    assert r.status_code == 400
    message = re.search(r'<p class="error" role="alert">(.*?)</p>', r.text, re.S).group(1)
    assert "\n" not in message.strip() and "Traceback" not in r.text
    assert client.get("/search/phases.zip", params=params).status_code == 400


def test_search_by_novelty_checks_what_the_filter_returned(client, db_url):
    r = client.get("/search", params={"novelty": "imported", "elements": "Na"})
    assert r.status_code == 200
    repo = open_repository(db_url)
    expected = {e.id for e in repo.query(Entry) if e.structure and "Na" in e.elements}
    assert set(_ids(r.text)) == expected
    assert "Novelty is not an OPTIMADE field" in r.text


# -- archives ----------------------------------------------------------------------------------
def _zip(response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(response.content))


def test_a_systems_zip_holds_every_listed_phase_as_cif_and_csv(client, db_url, phases):
    repo = open_repository(db_url)
    for within in ("inf", "0.12"):
        z = _zip(client.get("/systems/Li-Mn-O/phases.zip", params={"scheme": SCHEME,
                                                                   "within": within}))
        rows = list(csv.DictReader(io.StringIO(z.read("energies.csv").decode())))
        subs = {"Li", "Mn", "O", "Li-O", "Mn-O", "Li-Mn", "Li-Mn-O"}
        expected = {p.id for p in phases if p.scheme == SCHEME and p.chemsys in subs
                    and p.e_above_hull <= float(within) + 1e-9}
        assert {r["id"] for r in rows} == expected
        for r in rows:
            entry = repo.get(Entry, r["id"])
            if entry.structure is None:
                assert r["cif"] == ""
                continue
            cif = CifParser.from_str(z.read(r["cif"]).decode()).parse_structures(
                primitive=False)[0]
            assert StructureMatcher().fit(cif, Structure.from_dict(entry.structure))
            assert float(r["e_above_hull"]) == pytest.approx(
                next(p for p in phases if p.id == r["id"]).e_above_hull)
        assert sorted(n for n in z.namelist() if n.startswith("cif/")) == sorted(
            r["cif"] for r in rows if r["cif"])


def test_a_search_zip_holds_the_results(client):
    z = _zip(client.get("/search/phases.zip", params={"elements": "Li,O"}))
    page = client.get("/search", params={"elements": "Li,O"}).text
    rows = list(csv.DictReader(io.StringIO(z.read("energies.csv").decode())))
    assert {r["id"] for r in rows} == set(_ids(page))
    assert 'elements HAS ALL "Li","O"' in z.read("README.txt").decode()


def test_archive_names_cannot_leave_their_folder(tmp_path):
    url = make_repo_url("sqlite", tmp_path)
    from gnomon.pipeline.thermo.entries import make_entry
    from gnomon.pipeline.thermo.hull import HullEngine

    s = explorer_db.rocksalt("Na", "Cl", 5.64)
    evil = [make_entry(s.composition, -20.0, SCHEME, structure=s, id=name)
            for name in ("../../etc/passwd", "/abs/path", "..", "a/../../b", "C:\\x", ".hidden")]
    refs = [make_entry(el, e, SCHEME) for el, e in (("Na", -1.3), ("Cl", -1.8))]
    HullEngine(open_repository(url)).ingest([*refs, *evil])
    with TestClient(create_app(url)) as c:
        z = _zip(c.get("/systems/Cl-Na/phases.zip", params={"within": "inf"}))
        z2 = _zip(c.get("/search/phases.zip", params={"elements": "Na"}))
    for archive in (z, z2):
        names = archive.namelist()
        assert len([n for n in names if n.startswith("cif/")]) == len(evil)
        for name in names:
            assert re.fullmatch(r"(cif/)?[A-Za-z0-9][A-Za-z0-9._-]*", name), name
            assert ".." not in name.split("/")


# -- campaigns ---------------------------------------------------------------------------------
def test_a_campaign_page_lists_what_each_round_found(client, phases):
    page = client.get("/campaigns/alpha").text
    r0 = page[page.index('id="round-0"'):page.index('id="round-1"')]
    r1 = page[page.index('id="round-1"'):]
    limno2, limn2o4 = _phase(phases, "LiMnO2"), _phase(phases, "LiMn2O4")
    assert f'href="/phases/{limno2.id}"' in r0 and f'href="/phases/{limn2o4.id}"' in r1
    unstable = _phase(phases, "LiMn3O4", stable=False)
    assert unstable.id not in page  # relaxed, but never below the hull
    assert client.get("/campaigns/nope").status_code == 404


def test_two_campaigns_compare_by_hit_rate_and_stable_phases_per_oracle_call(client):
    page = client.get("/campaigns/compare", params={"a": "alpha", "b": "beta"}).text
    cells = {k: (a, b) for k, a, b in re.findall(
        r'<tr><th>([^<]+)</th><td class="num">([^<]*)</td><td class="num">([^<]*)</td></tr>',
        page)}
    assert cells["oracle calls (relaxations, failed ones included)"] == ("10", "10")
    assert cells["hit rate"] == (f"{3 / 9:.3f}", f"{1 / 8:.3f}")
    # alpha's own phases on the hull now: LiMnO2 and LiMn2O4 (mlip) and LiMn2O4 (qe)
    assert cells["stable phases found (on the hull now)"] == ("3", "1")
    assert cells["stable phases per oracle call"] == ("0.300", "0.100")
    assert client.get("/campaigns/compare", params={"a": "alpha"}).status_code == 400
    assert client.get("/campaigns/compare", params={"a": "alpha", "b": "x"}).status_code == 404


# -- everything from the server itself, no script in the page ----------------------------------
def test_pages_carry_no_inline_script_and_load_only_served_files(client, phases):
    pid = _phase(phases, "NaCl").id
    for path in ("/", "/systems/Li-Mn-O", f"/phases/{pid}", "/search?elements=Li",
                 "/campaigns/alpha", "/campaigns/compare?a=alpha&b=beta"):
        text = client.get(path).text
        for tag in re.findall(r"<script\b[^>]*>.*?</script>", text, re.S):
            assert re.match(r'<script src="/explorer/assets/[\w.-]+\.js" defer></script>$',
                            tag), tag
        assert not re.search(r"\son[a-z]+=", text), path
        for url in re.findall(r'(?:src|href|data-figure|data-facts-src)="([^"]*)"', text):
            assert url.startswith(("/", "#", "data:")), (path, url)
    plotly = client.get(re.search(r'src="(/explorer/assets/plotly-[^"]+)"',
                                  client.get(f"/phases/{pid}").text).group(1))
    assert plotly.status_code == 200 and b"plotly.js" in plotly.content[:200]
    assert "immutable" in plotly.headers["cache-control"]
    assert client.get("/explorer/assets/plotly-0.0.0.min.js").status_code == 404
    assert client.get("/explorer/assets/..%2Fviews.py").status_code == 404


# -- the plotly.js each page loads -------------------------------------------------------------
def _plotly_src(client, path: str) -> str:
    return re.search(r'src="/explorer/assets/(plotly-[^"]+)"', client.get(path).text).group(1)


def _trace_types(client, url: str, **params) -> set[str]:
    return {t["type"] for t in client.get(url, params=params).json()["data"]}


@pytest.fixture
def bundles_looked_up_again():
    """static_files.installed() forgets what it found, before and after the test."""
    static_files.installed.cache_clear()
    yield
    static_files.installed.cache_clear()


def test_each_figure_declares_its_plotly_trace_types(client, phases):
    for chemsys in ("Li-O", "Li-Mn-O", "Li-Mn-Na-O"):
        types = _trace_types(client, f"/systems/{chemsys}/hull.json", scheme=SCHEME)
        assert types <= hull_plot.TRACE_TYPES[len(chemsys.split("-"))], chemsys
    nacl = _phase(phases, "NaCl")
    assert _trace_types(client, f"/phases/{nacl.id}/structure.json") <= structure_plot.TRACE_TYPES
    assert _trace_types(client, f"/phases/{nacl.id}/xrd.json") <= xrd.TRACE_TYPES


def test_the_plotly_bundles_are_pinned_to_the_plotly_wheels_version():
    vendor = static_files.VENDOR.parent
    wanted = json.loads((vendor / "package.json").read_text())["dependencies"]
    lock = json.loads((vendor / "package-lock.json").read_text())["packages"]
    assert set(wanted) == {b.package for b in static_files.BUNDLES}
    for package, version in wanted.items():
        assert version == lock[f"node_modules/{package}"]["version"] == get_plotlyjs_version()


@pytest.mark.integration  # the bundles make install puts into vendor/node_modules (npm ci)
def test_each_page_loads_the_smallest_plotly_bundle_that_draws_its_figures(
        client, phases, bundles_looked_up_again):
    if len(static_files.installed()) < len(static_files.BUNDLES):
        pytest.skip(f"the npm plotly.js bundles are not installed in {static_files.VENDOR}")
    version = get_plotlyjs_version()
    nacl = _phase(phases, "NaCl")
    pages = {"/systems/Li-O": "basic", "/systems/Li-Mn-O": "cartesian",
             "/systems/Li-Mn-Na-O": "gl3d", f"/phases/{nacl.id}": "gl3d"}
    for path, kind in pages.items():
        name = _plotly_src(client, f"{path}?scheme={SCHEME}" if "systems" in path else path)
        assert name == f"plotly-{kind}-{version}.min.js", path
        r = client.get(f"/explorer/assets/{name}")
        assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
        assert r.content.startswith(f"/**\n* plotly.js ({kind} - minified) v{version}".encode())
    for bundle in static_files.BUNDLES:  # the trace types a bundle claims are the ones it has
        found = set(re.findall(r'moduleType:"trace",name:"(\w+)"', bundle.path().read_text()))
        assert found == bundle.traces, bundle.name


def test_without_the_npm_bundles_pages_load_the_full_plotly(client, phases, tmp_path,
                                                             monkeypatch, bundles_looked_up_again):
    version = get_plotlyjs_version()
    stale = tmp_path / "plotly.js-cartesian-dist-min"  # another version than the wheel's
    stale.mkdir()
    (stale / "package.json").write_text(json.dumps({"version": "0.0.1"}))
    (stale / "plotly-cartesian.min.js").write_text("/* plotly.js 0.0.1 */")
    monkeypatch.setattr(static_files, "VENDOR", tmp_path)
    nacl = _phase(phases, "NaCl")
    for path in (f"/systems/Li-O?scheme={SCHEME}", f"/systems/Li-Mn-Na-O?scheme={SCHEME}",
                 f"/phases/{nacl.id}"):
        assert _plotly_src(client, path) == f"plotly-{version}.min.js", path
    r = client.get(f"/explorer/assets/plotly-{version}.min.js")
    assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
    assert r.content.startswith(f"/**\n* plotly.js v{version}".encode())
    for kind in ("basic", "cartesian", "gl3d"):
        assert client.get(f"/explorer/assets/plotly-{kind}-{version}.min.js").status_code == 404


# -- whatever a client sends, no 500 -----------------------------------------------------------
KEYS = ("scheme", "within", "elements", "mode", "formula", "filter", "nelements_min",
        "nelements_max", "max_e_above_hull", "sort", "descending", "page", "wavelength", "cell",
        "a", "b", "campaign", "stable")


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/search", "/search/novelty.json", "/search/phases.zip",
                             "/systems/Li-Mn-O/hull.json", "/systems/Li-Mn-O/phases.zip",
                             "/systems/Li-Mn-O", "/phases/{nacl}/xrd.json",
                             "/phases/{nacl}/xrd.csv", "/phases/{nacl}",
                             "/phases/{nacl}/structure.json", "/campaigns/compare"]),
       params=st.dictionaries(st.sampled_from(KEYS),
                              st.one_of(st.text(max_size=40), st.sampled_from(
                                  ["inf", "-1", "nan", "1e309", "0", "Li,O", "CuKa", "all"])),
                              max_size=4))
def test_no_query_a_client_sends_gets_a_500(client, phases, path, params):
    url = path.format(nacl=_phase(phases, "NaCl").id)
    r = client.get(url, params=params)
    assert r.status_code < 500, (url, params, r.text[:300])


def test_a_long_window_lists_the_phases_nearest_the_hull_and_offers_the_rest(
        db_url, phases, monkeypatch):
    monkeypatch.setattr(views, "PAGE_ROWS", 3)
    window = sorted((p for p in phases if p.scheme == SCHEME
                     and set(p.chemsys.split("-")) <= {"Li", "Mn", "O"}),
                    key=lambda p: (p.e_above_hull, p.chemsys.count("-"), p.reduced_formula))
    with TestClient(create_app(db_url)) as c:
        page = c.get("/systems/Li-Mn-O", params={"scheme": SCHEME, "within": "inf"}).text
        assert _ids(page) == [p.id for p in window[:3]]
        assert f"show all {len(window)}</a>" in page
        every = c.get("/systems/Li-Mn-O", params={"scheme": SCHEME, "within": "inf",
                                                  "rows": "all"}).text
        assert set(_ids(every)) == {p.id for p in window}
        z = _zip(c.get("/systems/Li-Mn-O/phases.zip", params={"scheme": SCHEME,
                                                              "within": "inf"}))
        listed = {r["id"] for r in csv.DictReader(io.StringIO(z.read("energies.csv").decode()))}
        assert listed == {p.id for p in window}


@pytest.mark.parametrize(("chemsys", "axes"), [("Li-O", "xy"), ("Li-Mn-O", "abc")])
def test_stable_markers_sit_on_the_hull_lines_pymatgen_drew(client, chemsys, axes):
    figure = client.get(f"/systems/{chemsys}/hull.json", params={"scheme": SCHEME}).json()
    lines = next(t for t in figure["data"] if t.get("mode") == "lines" and not t.get("name"))
    stars = next(t for t in figure["data"] if t.get("name") == "on the hull")

    def norm(values: tuple) -> tuple:
        if axes == "xy":
            return tuple(round(v, 6) for v in values)
        total = sum(values)
        return tuple(round(v / total, 6) for v in values)

    vertices = {norm(p) for p in zip(*(lines[a] for a in axes), strict=True)
                if None not in p}
    points = {norm(p) for p in zip(*(stars[a] for a in axes), strict=True)}
    assert points == vertices  # every stable phase is a vertex, and every vertex a phase
