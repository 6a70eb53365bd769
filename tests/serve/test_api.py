"""gnomon serve's OPTIMADE endpoints: what they return, the same on SQLite and MongoDB, and what
they refuse."""

from __future__ import annotations

import numpy as np
import pytest
from optimade.models import StructureResource
from pymatgen.core import Structure
from serve_helpers import SCHEME, campaign_entries, fill, grid_structure, new_url

from gnomon.storage import open_repository
from gnomon.storage.optimade.resources import PROVIDER_FIELD_NAMES, structure_row

BACKENDS = ("sqlite", "mongomock")


def stored_rows(url: str) -> dict[str, dict]:
    """The structure rows of a database, computed from its stored entries and phases."""
    repo = open_repository(url)
    try:
        phases = {p["id"]: p for p in repo.find("phases")}
        rows = [structure_row(e, phases.get(e["id"])) for e in repo.find("entries")]
    finally:
        repo.close()
    return {r["id"]: r for r in rows if r is not None}


def ids(client, filter_: str | None = None, **params) -> list[str]:
    """Every id a filter returns, following the pages."""
    query = {"page_limit": 7, **params}
    if filter_ is not None:
        query["filter"] = filter_
    out: list[str] = []
    offset = 0
    while True:
        r = client.get("/v1/structures", params={**query, "page_offset": offset,
                                                 "response_fields": "id"})
        assert r.status_code == 200, (filter_, r.text)
        body = r.json()
        out += [d["id"] for d in body["data"]]
        if not body["meta"]["more_data_available"]:
            assert body["meta"]["data_returned"] == len(out)
            return out
        assert body["links"]["next"]
        offset += len(body["data"])


def test_base_endpoints(clients):
    for client in clients.values():
        versions = client.get("/versions")
        assert versions.status_code == 200
        assert versions.text.splitlines()[:2] == ["version", "1"]
        info = client.get("/v1/info").json()
        assert info["meta"]["provider"]["prefix"] == "gnomon"
        assert "structures" in info["data"]["attributes"]["available_endpoints"]
        assert client.get("/v1/links").status_code == 200


def test_info_structures_describes_every_gnomon_field(clients):
    properties = clients["sqlite"].get("/v1/info/structures").json()["data"]["properties"]
    for name in PROVIDER_FIELD_NAMES:
        prop = properties[f"_gnomon_{name}"]
        assert prop["description"] and prop["type"] and prop["sortable"]
    assert properties["_gnomon_e_above_hull"]["unit"] == "eV/atom"
    assert properties["_gnomon_round"]["type"] == "integer"


@pytest.mark.parametrize("backend", BACKENDS)
def test_structures_are_the_stored_entries(backend, clients, campaign_urls):
    """Every entry with a structure is served once, with its structure and its phase's numbers;
    the composition-only entry is not."""
    rows = stored_rows(campaign_urls[backend])
    client = clients[backend]
    body = client.get("/v1/structures", params={"page_limit": 1000}).json()
    served = {d["id"]: d for d in body["data"]}
    assert set(served) == set(rows)
    assert body["meta"]["data_available"] == len(rows)
    repo = open_repository(campaign_urls[backend])
    try:
        entries = {e.id: e for e in repo.entries()}
        phases = {p.id: p for p in repo.phases()}
    finally:
        repo.close()
    for sid, resource in served.items():
        StructureResource(**resource)  # the OPTIMADE model accepts it
        attrs = resource["attributes"]
        structure = Structure.from_dict(entries[sid].structure)
        assert attrs["species_at_sites"] == [s.specie.symbol for s in structure]
        assert np.allclose(attrs["cartesian_site_positions"], structure.cart_coords)
        assert np.allclose(attrs["lattice_vectors"], structure.lattice.matrix)
        assert attrs["elements"] == sorted(entries[sid].elements)
        assert attrs["nsites"] == len(structure)
        assert attrs["_gnomon_e_above_hull"] == pytest.approx(phases[sid].e_above_hull)
        assert attrs["_gnomon_is_stable"] == phases[sid].is_stable
        assert attrs["_gnomon_scheme"] == entries[sid].scheme
        assert attrs["_gnomon_calculation_id"] == entries[sid].calculation_id
    one = next(iter(served))
    single = client.get(f"/v1/structures/{one}").json()
    assert single["data"]["id"] == one
    assert (
        single["data"]["attributes"]["chemical_formula_reduced"]
        == served[one]["attributes"]["chemical_formula_reduced"]
    )
    missing = client.get("/v1/structures/no-such-id").json()
    assert missing["data"] is None and missing["meta"]["data_returned"] == 0


def test_formulas_follow_optimade():
    """Alphabetical reduced formulas (not pymatgen's electronegativity order), anonymous ones
    largest amount first."""
    from gnomon.storage.optimade.resources import (
        formula_anonymous,
        formula_descriptive,
        formula_reduced,
    )

    assert formula_reduced({"Na": 2, "Cl": 2}) == "ClNa"
    assert formula_reduced({"Li": 4, "O": 2}) == "Li2O"
    assert formula_anonymous({"Li": 4, "O": 2}) == "A2B"
    assert formula_anonymous({"Fe": 4, "O": 6}) == "A3B2"
    assert formula_descriptive({"Li": 6, "Mn": 2, "O": 6}) == "Li6Mn2O6"


# filter -> the same predicate over the stored rows, in Python
FILTERS = {
    'elements HAS ALL "Li","O"': lambda r: {"Li", "O"} <= set(r["elements"]),
    'elements HAS ANY "Na","Fe"': lambda r: bool({"Na", "Fe"} & set(r["elements"])),
    'elements HAS "Mn"': lambda r: "Mn" in r["elements"],
    'elements HAS ONLY "Li","O"': lambda r: set(r["elements"]) <= {"Li", "O"},
    "nelements=2": lambda r: r["nelements"] == 2,
    "nelements>=3": lambda r: r["nelements"] >= 3,
    "elements LENGTH 1": lambda r: r["nelements"] == 1,
    'chemical_formula_reduced="Li2O"': lambda r: r["chemical_formula_reduced"] == "Li2O",
    'chemical_formula_anonymous="AB"': lambda r: r["chemical_formula_anonymous"] == "AB",
    'chemical_formula_reduced STARTS WITH "Li"': lambda r: r["chemical_formula_reduced"].startswith(
        "Li"
    ),
    "_gnomon_e_above_hull<=0.05": lambda r: (
        r["e_above_hull"] is not None and r["e_above_hull"] <= 0.05
    ),
    "_gnomon_e_above_hull>0.1": lambda r: r["e_above_hull"] is not None and r["e_above_hull"] > 0.1,
    'elements HAS ALL "Li","O" AND _gnomon_e_above_hull<=0.05': lambda r: (
        {"Li", "O"} <= set(r["elements"]) and r["e_above_hull"] <= 0.05
    ),
    'elements HAS "Na" OR nelements=3': lambda r: "Na" in r["elements"] or r["nelements"] == 3,
    'NOT elements HAS "O"': lambda r: "O" not in r["elements"],
    # an unknown value makes a comparison false, and NOT keeps it false (optimade's
    # MongoTransformer and SQL's three-valued logic agree): references have no round
    'elements HAS "O" AND NOT (nelements=2 OR _gnomon_round=1)': lambda r: (
        "O" in r["elements"] and r["nelements"] != 2 and r["round"] is not None and r["round"] != 1
    ),
    "_gnomon_round=2": lambda r: r["round"] == 2,
    "_gnomon_round!=2": lambda r: r["round"] is not None and r["round"] != 2,
    "_gnomon_campaign IS UNKNOWN": lambda r: r["campaign"] is None,
    "_gnomon_is_stable=1": lambda r: r["is_stable"] is True,
    '_gnomon_scheme="test-pbe" AND _gnomon_formation_energy_per_atom<0': lambda r: (
        r["formation_energy_per_atom"] is not None and r["formation_energy_per_atom"] < 0
    ),
    "nsites>=4 AND nsites<6": lambda r: 4 <= r["nsites"] < 6,
    '_gnomon_source CONTAINS "relax-1"': lambda r: "relax-1" in (r["source"] or ""),
}


@pytest.mark.parametrize("filter_", list(FILTERS))
def test_filters_agree_on_both_backends_and_with_the_data(filter_, clients, campaign_urls):
    expected = sorted(
        i for i, row in stored_rows(campaign_urls["sqlite"]).items() if FILTERS[filter_](row)
    )
    assert sorted(ids(clients["sqlite"], filter_)) == expected
    assert sorted(ids(clients["mongomock"], filter_)) == expected


def test_the_filter_set_is_not_trivial(campaign_urls):
    """Each filter above selects some structures and leaves some out, so agreement means
    something."""
    rows = list(stored_rows(campaign_urls["sqlite"]).values())
    for filter_, predicate in FILTERS.items():
        hits = sum(1 for r in rows if predicate(r))
        assert 0 < hits < len(rows), filter_


@pytest.mark.parametrize("backend", BACKENDS)
def test_sort_and_paging(backend, clients, campaign_urls):
    client = clients[backend]
    rows = stored_rows(campaign_urls[backend])
    paged = ids(client, sort="-_gnomon_e_above_hull,chemical_formula_reduced")
    assert len(paged) == len(set(paged)) == len(rows)
    e = [rows[i]["e_above_hull"] for i in paged]
    assert e == sorted(e, reverse=True)
    by_nsites = ids(client, "nelements>=2", sort="nsites")
    assert [rows[i]["nsites"] for i in by_nsites] == sorted(rows[i]["nsites"] for i in by_nsites)
    assert ids(clients["sqlite"], sort="nsites,id") == ids(clients["mongomock"], sort="nsites,id")
    unsortable = client.get("/v1/structures", params={"sort": "elements"})
    assert unsortable.status_code == 400 and unsortable.json()["errors"]


def test_response_fields(clients):
    for client in clients.values():
        body = client.get("/v1/structures", params={
            "response_fields": "elements,_gnomon_e_above_hull", "page_limit": 3}).json()
        assert len(body["data"]) == 3
        for d in body["data"]:
            assert set(d["attributes"]) == {"elements", "_gnomon_e_above_hull"}


MALFORMED = [
    'elements HAS ALL "Li" AND',
    "nelements=",
    'elements HAS ALL "Li","O"))',
    "chemical_formula_reduced = 'Li2O'",
    "nelements > > 2",
    "no_such_field = 2",
    '"unterminated',
    "(nelements=2",
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("filter_", MALFORMED)
def test_malformed_filter_is_a_400_error_document(backend, filter_, clients):
    r = clients[backend].get("/v1/structures", params={"filter": filter_})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["errors"][0]["status"] == "400"
    assert body["errors"][0]["detail"]
    assert "Traceback (most recent call last)" not in r.text


def test_unsupported_query_is_501_not_500(clients):
    for client in clients.values():
        r = client.get(
            "/v1/structures", params={"filter": 'elements:species_at_sites HAS "Li":"Li"'}
        )
        assert r.status_code == 501, r.text
        assert r.json()["errors"]


def test_page_limits(clients):
    client = clients["sqlite"]
    too_many = client.get("/v1/structures", params={"page_limit": 1001})
    assert too_many.status_code == 403
    assert "1000" in too_many.json()["errors"][0]["detail"]
    assert client.get("/v1/structures", params={"page_limit": 1000}).status_code == 200
    default = client.get("/v1/structures").json()
    assert len(default["data"]) == 20 and default["meta"]["more_data_available"]
    negative = client.get("/v1/structures", params={"page_offset": -1})
    assert negative.status_code in (400, 422) and negative.json()["errors"]


def test_request_size_is_bounded(clients):
    huge = 'elements HAS ANY ' + ",".join(['"Li"'] * 5000)
    r = clients["sqlite"].get("/v1/structures", params={"filter": huge})
    assert r.status_code == 414
    assert r.json()["errors"][0]["status"] == "414"
    body = clients["sqlite"].request("GET", "/v1/structures", content=b"x" * 100_000)
    assert body.status_code == 413


def test_read_only(clients):
    for client in clients.values():
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert client.request(method, "/v1/structures").status_code == 405


def test_no_sql_injection_through_a_value(tmp_path):
    """A value is data, never SQL: one that reads as SQL matches only itself, and the view and
    the database are intact after it."""
    from fastapi.testclient import TestClient

    from gnomon.pipeline.thermo.entries import make_entry
    from gnomon.serve.app import create_app

    hostile = "x' OR '1'='1'); DROP TABLE structures; --"
    url = f"sqlite:///{tmp_path / 'g.db'}"
    entries = campaign_entries(n=6)
    entries.append(
        make_entry(None, -9.0, SCHEME, structure=grid_structure(["Li", "Li", "O"]), source=hostile)
    )
    fill(url, entries)
    with TestClient(create_app(url)) as client:
        total = client.get("/v1/structures").json()["meta"]["data_available"]
        for filter_ in (f'_gnomon_source="{hostile}"', f'_gnomon_source CONTAINS "{hostile}"'):
            hit = client.get("/v1/structures", params={"filter": filter_}).json()
            assert [d["attributes"]["_gnomon_source"] for d in hit["data"]] == [hostile]
        for filter_ in ('id="1\' OR 1=1 --"', 'chemical_formula_reduced="Li2O\\" OR 1=1 --"',
                        'elements HAS "Li\') OR 1=1 --"'):
            r = client.get("/v1/structures", params={"filter": filter_})
            assert r.status_code in (200, 400)
            if r.status_code == 200:
                assert r.json()["data"] == []
        assert client.get("/v1/structures").json()["meta"]["data_available"] == total
    repo = open_repository(url)
    try:
        assert repo.count("entries") == len(entries)
    finally:
        repo.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_view_follows_the_database(backend, tmp_path):
    """An ingest while the server runs is served after the next refresh check."""
    from fastapi.testclient import TestClient

    from gnomon.pipeline.thermo.entries import make_entry
    from gnomon.serve.app import create_app

    url = new_url(backend, tmp_path)
    fill(url, campaign_entries(n=4))
    import time

    with TestClient(create_app(url, refresh_s=0.01)) as client:
        before = client.get("/v1/structures").json()["meta"]["data_available"]
        fill(
            url,
            [
                make_entry(
                    None,
                    -20.0,
                    SCHEME,
                    structure=grid_structure(["Na", "Na", "Cl", "Cl"]),
                    source="late",
                )
            ],
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.05)
            hit = client.get("/v1/structures", params={"filter": '_gnomon_source="late"'}).json()
            if hit["data"]:
                break
        assert [d["attributes"]["_gnomon_source"] for d in hit["data"]] == ["late"]
        assert client.get("/v1/structures").json()["meta"]["data_available"] == before + 1


@pytest.mark.parametrize("url", ["postgres://alice:s3cret@host/db", "sqlite://relative.db"])
def test_an_unsupported_url_is_refused_before_serving(url):
    from gnomon.serve.app import create_app
    from gnomon.storage import StorageError

    with pytest.raises(StorageError, match="sqlite:///path") as caught:
        create_app(url)
    assert "s3cret" not in str(caught.value)


def test_a_missing_database_is_refused_not_created(tmp_path):
    from gnomon.serve.app import create_app
    from gnomon.storage import StorageError

    with pytest.raises(StorageError, match="no gnomon database"):
        create_app(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()
