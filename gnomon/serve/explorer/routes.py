"""The explorer's HTTP routes: pages, figures, downloads and its two static assets.

Read-only: every route only reads the repository. Each page's data comes from
:mod:`gnomon.serve.explorer.views`, its markup from the autoescaped templates.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Match

from gnomon.pipeline.thermo.hull import HullEngine, subsystems
from gnomon.pipeline.thermo.phase_query import normalise_chemsys
from gnomon.serve.explorer import assets, downloads, figures, views
from gnomon.serve.explorer.templates import PHASE_COLUMNS, fmt, make_environment
from gnomon.storage import Repository, open_repository
from gnomon.storage.documents import stable_hash

_TEMPLATES = make_environment()


class LazyRepository:
    """The repository behind ``db_url``, opened at the first request and kept for the app's life.

    Opening late keeps ``mount_explorer`` cheap (no database is touched until a page is asked
    for); the SQLite backend gives each server thread its own connection.
    """

    def __init__(self, db_url: str):
        self.db_url = db_url
        self._repo: Repository | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Repository:
        if self._repo is None:
            with self._lock:
                if self._repo is None:
                    self._repo = open_repository(self.db_url)
        return self._repo


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def system_url(root: str) -> Callable[..., str]:
    def url(chemsys: str, scheme: str | None = None, within: float | None = None) -> str:
        params: dict[str, Any] = {}
        if scheme:
            params["scheme"] = scheme
        if within is not None and within != views.NEAR_STABLE:
            params["within"] = "inf" if math.isinf(within) else repr(within)
        tail = f"?{urlencode(params)}" if params else ""
        return f"{root}/systems/{quote(chemsys, safe='')}{tail}"

    return url


def _answers(request: Request, path: str) -> bool:
    """Whether the app serving this request has a route for ``GET path`` (the OPTIMADE API is
    linked from every page where the app serves one)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes)


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    root = _root(request)
    optimade = _answers(request, "/v1/info")
    html = _TEMPLATES.get_template(template).render(
        root=root, optimade=optimade, system_url=system_url(root), status=status, **context
    )
    return HTMLResponse(html, status_code=status)


def _error(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return _page(request, "error.html", status=status, title=title, message=message)


def _phase_props(p: views.PhaseView) -> list[tuple[str, str]]:
    ph, e = p.phase, p.entry
    props = [
        ("energy scheme", ph.scheme),
        ("energy (eV/atom)", fmt(ph.energy_per_atom, 4)),
        ("formation energy (eV/atom)", fmt(ph.formation_energy_per_atom, 4)),
        ("E above hull (eV/atom)", fmt(ph.e_above_hull, 4)),
        ("decomposition energy (eV/atom)", fmt(ph.decomposition_energy, 4)),
        ("on the hull", fmt(ph.is_stable)),
        ("below the hull when it arrived", fmt(ph.stable_at_ingest)),
        ("decomposes to", " + ".join(ph.decomposes_to) or "–"),
    ]
    if e is not None:
        props += [
            ("correction (eV)", fmt(e.correction, 4)),
            ("source", fmt(e.source)),
            ("campaign", fmt(e.campaign)),
            ("round", fmt(e.round)),
            ("candidate", fmt(e.candidate_id)),
            ("calculation", fmt(e.calculation_id)),
            ("code version", fmt(e.code_version)),
        ]
    if ph.note:
        props.append(("note", ph.note))
    return props


def make_router(db_url: str) -> APIRouter:
    repo = LazyRepository(db_url)
    hulls = figures.SvgCache()
    charts = figures.SvgCache()
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    def campaigns(request: Request) -> HTMLResponse:
        return _page(request, "home.html", home=views.home_view(repo()))

    @router.get("/campaigns/{name}/metrics.svg")
    def campaign_metrics(request: Request, name: str) -> Response:
        try:
            rows = views.campaign_rows(repo(), name)
        except views.NotFound as exc:
            return Response(str(exc), status_code=404, media_type="text/plain")
        if not rows:
            return Response(f"campaign {name!r} has no round metrics yet", status_code=404,
                            media_type="text/plain")
        key = (name, stable_hash(rows))
        svg = charts.get(key) or charts.put(key, figures.metrics_svg(rows, name))
        return Response(svg, media_type="image/svg+xml")

    @router.get("/systems", response_class=HTMLResponse)
    def find_system(request: Request, chemsys: str = "") -> Response:
        try:
            chemsys = normalise_chemsys(chemsys)
        except ValueError as exc:
            return _error(request, 400, "Not a chemical system", str(exc))
        if not chemsys:
            return _error(request, 400, "Not a chemical system", "name the elements, e.g. Li-Mn-O")
        return RedirectResponse(system_url(_root(request))(chemsys), status_code=303)

    @router.get("/systems/{chemsys}", response_class=HTMLResponse)
    def system(
        request: Request,
        chemsys: str,
        scheme: str | None = None,
        within: Annotated[float, Query(ge=0, description="eV/atom; inf lists every phase")] = views.NEAR_STABLE,
    ) -> Response:
        try:
            canonical = normalise_chemsys(chemsys)
        except ValueError as exc:
            return _error(request, 400, "Not a chemical system", str(exc))
        if canonical != chemsys:  # one address per system: O-Li goes to Li-O
            url = system_url(_root(request))(canonical, scheme, within)
            return RedirectResponse(url, status_code=308)
        db = repo()
        try:
            view = views.system_view(db, chemsys, scheme, within)
        except views.NotFound as exc:
            return _error(request, 404, f"Nothing in {chemsys}", str(exc))
        elements = chemsys.split("-")
        present = set(db.distinct("entries", "chemsys", {"scheme": view.scheme, "chemsys": elements}))
        missing = [el for el in elements if el not in present]
        return _page(request, "system.html", v=view, columns=PHASE_COLUMNS, has_hull=not missing,
                     missing=missing)

    @router.get("/systems/{chemsys}/hull.svg")
    def hull_diagram(chemsys: str, scheme: str) -> Response:
        try:
            chemsys = normalise_chemsys(chemsys)
        except ValueError as exc:
            return Response(str(exc), status_code=400, media_type="text/plain")
        n = len(chemsys.split("-"))
        if not 2 <= n <= 4:
            return Response(f"hull diagrams need 2 to 4 elements; {chemsys} has {n}",
                            status_code=400, media_type="text/plain")
        db = repo()
        # entries are only ever added, so their count says whether a cached drawing is current
        key = (scheme, chemsys, db.count("entries", {"scheme": scheme, "chemsys": subsystems(chemsys)}))
        svg = hulls.get(key)
        if svg is None:
            pd = HullEngine(db).phase_diagram(scheme, chemsys)
            if pd is None:
                return Response(f"no hull for {chemsys} in scheme {scheme}: an element has no "
                                "reference entry", status_code=404, media_type="text/plain")
            svg = hulls.put(key, figures.hull_svg(pd))
        return Response(svg, media_type="image/svg+xml")

    @router.get("/phases/{phase_id}", response_class=HTMLResponse)
    def phase(request: Request, phase_id: str) -> Response:
        try:
            view = views.phase_view(repo(), phase_id)
        except views.NotFound as exc:
            return _error(request, 404, "No such phase", str(exc))
        downloads_ = [("cif", "CIF"), ("poscar", "POSCAR"), ("json", "JSON (pymatgen)")]
        return _page(request, "phase.html", p=view, props=_phase_props(view), downloads=downloads_)

    @router.get("/phases/{phase_id}/download/{fmt}")
    def download(phase_id: str, fmt: str) -> Response:
        if fmt not in downloads.FORMATS:
            return Response(f"unknown format {fmt!r}: use one of {', '.join(downloads.FORMATS)}",
                            status_code=404, media_type="text/plain")
        try:
            entry, structure = views.phase_structure(repo(), phase_id)
        except views.NotFound as exc:
            return Response(str(exc), status_code=404, media_type="text/plain")
        form = downloads.FORMATS[fmt]
        text = form.write(structure, f"{entry.reduced_formula} {entry.id} ({entry.scheme})")
        name = downloads.filename(entry.reduced_formula, entry.id, fmt)
        return Response(text, media_type=form.media_type,
                        headers={"Content-Disposition": downloads.content_disposition(name)})

    @router.get("/explorer/assets/explorer.css")
    def stylesheet() -> Response:
        return Response(assets.CSS, media_type="text/css; charset=utf-8")

    @router.get("/explorer/assets/explorer.js")
    def script() -> Response:
        return Response(assets.JS, media_type="text/javascript; charset=utf-8")

    return router
