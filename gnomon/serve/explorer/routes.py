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


def _text(message: str, status: int) -> Response:
    return Response(message, status_code=status, media_type="text/plain")


class ExplorerPages:
    """The explorer's handlers over one database: one method per route.

    Holds what the handlers share: the repository (opened at the first request) and the caches
    of drawn figures.
    """

    def __init__(self, db_url: str):
        self.repo = LazyRepository(db_url)
        self.hulls = figures.SvgCache()
        self.charts = figures.SvgCache()

    def campaigns(self, request: Request) -> HTMLResponse:
        """``/``: the campaigns and the chemical systems."""
        return _page(request, "home.html", home=views.home_view(self.repo()))

    def campaign_metrics(self, request: Request, name: str) -> Response:
        """``/campaigns/{name}/metrics.svg``: a campaign's per-round metrics, drawn."""
        try:
            rows = views.campaign_rows(self.repo(), name)
        except views.NotFound as exc:
            return _text(str(exc), 404)
        if not rows:
            return _text(f"campaign {name!r} has no round metrics yet", 404)
        key = (name, stable_hash(rows))
        svg = self.charts.get(key) or self.charts.put(key, figures.metrics_svg(rows, name))
        return Response(svg, media_type="image/svg+xml")

    def system(
        self,
        request: Request,
        chemsys: str,
        scheme: str | None = None,
        within: Annotated[
            float, Query(ge=0, description="eV/atom; inf lists every phase")
        ] = views.NEAR_STABLE,
    ) -> Response:
        """``/systems/{chemsys}``: one chemical system's hull and phases."""
        try:
            canonical = normalise_chemsys(chemsys)
        except ValueError as exc:
            return _error(request, 400, "Not a chemical system", str(exc))
        if canonical != chemsys:  # one address per system: O-Li goes to Li-O
            url = system_url(_root(request))(canonical, scheme, within)
            return RedirectResponse(url, status_code=308)
        db = self.repo()
        try:
            view = views.system_view(db, chemsys, scheme, within)
        except views.NotFound as exc:
            return _error(request, 404, f"Nothing in {chemsys}", str(exc))
        elements = chemsys.split("-")
        present = set(
            db.distinct("entries", "chemsys", {"scheme": view.scheme, "chemsys": elements})
        )
        missing = [el for el in elements if el not in present]
        return _page(request, "system.html", v=view, columns=PHASE_COLUMNS, has_hull=not missing,
                     missing=missing)

    def hull_diagram(self, chemsys: str, scheme: str) -> Response:
        """``/systems/{chemsys}/hull.svg``: the hull of 2 to 4 elements in one scheme."""
        try:
            chemsys = normalise_chemsys(chemsys)
        except ValueError as exc:
            return _text(str(exc), 400)
        n = len(chemsys.split("-"))
        if not 2 <= n <= 4:
            return _text(f"hull diagrams need 2 to 4 elements; {chemsys} has {n}", 400)
        db = self.repo()
        # entries are only ever added, so their count says whether a cached drawing is current
        count = db.count("entries", {"scheme": scheme, "chemsys": subsystems(chemsys)})
        key = (scheme, chemsys, count)
        svg = self.hulls.get(key)
        if svg is None:
            pd = HullEngine(db).phase_diagram(scheme, chemsys)
            if pd is None:
                return _text(f"no hull for {chemsys} in scheme {scheme}: an element has no "
                             "reference entry", 404)
            svg = self.hulls.put(key, figures.hull_svg(pd))
        return Response(svg, media_type="image/svg+xml")

    def phase(self, request: Request, phase_id: str) -> Response:
        """``/phases/{phase_id}``: a phase's numbers and structure."""
        try:
            view = views.phase_view(self.repo(), phase_id)
        except views.NotFound as exc:
            return _error(request, 404, "No such phase", str(exc))
        return _page(request, "phase.html", p=view, props=_phase_props(view),
                     downloads=_DOWNLOADS)

    def download(self, phase_id: str, fmt: str) -> Response:
        """``/phases/{phase_id}/download/{fmt}``: the structure as CIF, POSCAR or JSON."""
        if fmt not in downloads.FORMATS:
            return _text(f"unknown format {fmt!r}: use one of {', '.join(downloads.FORMATS)}",
                         404)
        try:
            entry, structure = views.phase_structure(self.repo(), phase_id)
        except views.NotFound as exc:
            return _text(str(exc), 404)
        form = downloads.FORMATS[fmt]
        text = form.write(structure, f"{entry.reduced_formula} {entry.id} ({entry.scheme})")
        name = downloads.filename(entry.reduced_formula, entry.id, fmt)
        return Response(text, media_type=form.media_type,
                        headers={"Content-Disposition": downloads.content_disposition(name)})


_DOWNLOADS = [("cif", "CIF"), ("poscar", "POSCAR"), ("json", "JSON (pymatgen)")]


def find_system(request: Request, chemsys: str = "") -> Response:
    """``/systems?chemsys=``: the search box, redirected to the system's own address."""
    try:
        chemsys = normalise_chemsys(chemsys)
    except ValueError as exc:
        return _error(request, 400, "Not a chemical system", str(exc))
    if not chemsys:
        return _error(request, 400, "Not a chemical system", "name the elements, e.g. Li-Mn-O")
    return RedirectResponse(system_url(_root(request))(chemsys), status_code=303)


def stylesheet() -> Response:
    return Response(assets.CSS, media_type="text/css; charset=utf-8")


def script() -> Response:
    return Response(assets.JS, media_type="text/javascript; charset=utf-8")


def make_router(db_url: str) -> APIRouter:
    """The explorer's routes over the database at ``db_url`` (opened at the first request)."""
    pages = ExplorerPages(db_url)
    router = APIRouter(include_in_schema=False)
    html = {"response_class": HTMLResponse}
    router.add_api_route("/", pages.campaigns, methods=["GET"], **html)
    router.add_api_route("/campaigns/{name}/metrics.svg", pages.campaign_metrics, methods=["GET"])
    router.add_api_route("/systems", find_system, methods=["GET"], **html)
    router.add_api_route("/systems/{chemsys}", pages.system, methods=["GET"], **html)
    router.add_api_route("/systems/{chemsys}/hull.svg", pages.hull_diagram, methods=["GET"])
    router.add_api_route("/phases/{phase_id}", pages.phase, methods=["GET"], **html)
    router.add_api_route("/phases/{phase_id}/download/{fmt}", pages.download, methods=["GET"])
    router.add_api_route("/explorer/assets/explorer.css", stylesheet, methods=["GET"])
    router.add_api_route("/explorer/assets/explorer.js", script, methods=["GET"])
    return router
