"""The explorer's HTTP routes: pages, figures, downloads, search and its static assets.

Read-only: every route only reads the repository. Each page's data comes from
:mod:`gnomon.serve.explorer.views`, its markup from the autoescaped templates.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gnomon.pipeline.thermo.hull import HullEngine, subsystems
from gnomon.pipeline.thermo.phase_query import normalise_chemsys
from gnomon.serve.explorer import (
    assets,
    downloads,
    figures,
    hull_plot,
    static_files,
    structure_plot,
    views,
    xrd,
)
from gnomon.serve.explorer.campaign_routes import CampaignPages
from gnomon.serve.explorer.phase_routes import PhaseExtras
from gnomon.serve.explorer.search_routes import SearchPages
from gnomon.serve.explorer.system_routes import SystemExtras
from gnomon.serve.explorer.templates import PHASE_COLUMNS, fmt, query, urlpart
from gnomon.serve.explorer.web import (
    Shared,
    error,
    page,
    root_of,
    system_url,
    text,
    within_param,
)
from gnomon.storage.documents import stable_hash


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


class ExplorerPages:
    """The explorer's handlers over one database: one method per route.

    Holds what the handlers share (:class:`~gnomon.serve.explorer.web.Shared`: the repository,
    opened at the first request, novelty verdicts) and the caches of drawn figures.
    """

    def __init__(self, shared: Shared):
        self.shared = shared
        self.repo = shared.repo
        self.hulls = figures.SvgCache()
        self.charts = figures.SvgCache()
        self.extras = PhaseExtras(shared)

    def campaigns(self, request: Request) -> HTMLResponse:
        """``/``: the campaigns and the chemical systems."""
        return page(request, "home.html", home=views.home_view(self.repo()))

    def campaign_metrics(self, request: Request, name: str) -> Response:
        """``/campaigns/{name}/metrics.svg``: a campaign's per-round metrics, drawn."""
        try:
            rows = views.campaign_rows(self.repo(), name)
        except views.NotFound as exc:
            return text(str(exc), 404)
        if not rows:
            return text(f"campaign {name!r} has no round metrics yet", 404)
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
        rows: str | None = None,
    ) -> Response:
        """``/systems/{chemsys}``: one chemical system's hull and phases (``rows=all``: every
        phase of the window in the table, not only the nearest :data:`views.PAGE_ROWS`)."""
        try:
            canonical = normalise_chemsys(chemsys)
        except ValueError as exc:
            return error(request, 400, "Not a chemical system", str(exc))
        if canonical != chemsys:  # one address per system: O-Li goes to Li-O
            url = system_url(root_of(request))(canonical, scheme, within)
            return RedirectResponse(url, status_code=308)
        db = self.repo()
        try:
            view = self.shared.system_view(chemsys, scheme, within, every_row=rows == "all")
        except views.NotFound as exc:
            return error(request, 404, f"Nothing in {chemsys}", str(exc))
        elements = chemsys.split("-")
        present = set(
            db.distinct("entries", "chemsys", {"scheme": view.scheme, "chemsys": elements})
        )
        missing = [el for el in elements if el not in present]
        novelty = self.shared.novelty.peek(db, [r["id"] for r in view.rows])
        params = query({"scheme": view.scheme, "within": within_param(view.within),
                        "rows": "all" if rows == "all" else None})
        facts_src = (None if len(novelty) == len(view.rows) else
                     f"{root_of(request)}/systems/{urlpart(chemsys)}/novelty.json?{params}")
        hull_src = (f"{root_of(request)}/systems/{urlpart(chemsys)}/hull.json?"
                    + query({"scheme": view.scheme, "within": within_param(view.within)}))
        return page(request, "system.html", v=view, columns=PHASE_COLUMNS, has_hull=not missing,
                    missing=missing, novelty=novelty, facts_src=facts_src,
                    within_param=within_param(view.within), hull_src=hull_src,
                    plotly_js=static_files.plotly_script(
                        hull_plot.TRACE_TYPES.get(view.n_elements, ())))

    def hull_diagram(self, chemsys: str, scheme: str) -> Response:
        """``/systems/{chemsys}/hull.svg``: the hull of 2 to 4 elements in one scheme."""
        try:
            chemsys = normalise_chemsys(chemsys)
        except ValueError as exc:
            return text(str(exc), 400)
        n = len(chemsys.split("-"))
        if not 2 <= n <= 4:
            return text(f"hull diagrams need 2 to 4 elements; {chemsys} has {n}", 400)
        db = self.repo()
        # entries are only ever added, so their count says whether a cached drawing is current
        count = db.count("entries", {"scheme": scheme, "chemsys": subsystems(chemsys)})
        key = (scheme, chemsys, count)
        svg = self.hulls.get(key)
        if svg is None:
            pd = HullEngine(db).phase_diagram(scheme, chemsys)
            if pd is None:
                return text(f"no hull for {chemsys} in scheme {scheme}: an element has no "
                             "reference entry", 404)
            svg = self.hulls.put(key, figures.hull_svg(pd, scheme))
        return Response(svg, media_type="image/svg+xml")

    def phase(self, request: Request, phase_id: str, wavelength: str | None = None) -> Response:
        """``/phases/{phase_id}``: a phase's numbers, novelty, lineage, structure and XRD."""
        try:
            view = views.phase_view(self.repo(), phase_id)
        except views.NotFound as exc:
            return error(request, 404, "No such phase", str(exc))
        return page(request, "phase.html", p=view, props=_phase_props(view),
                    downloads=_DOWNLOADS, plotly_js=_phase_plotly(),
                    **self.extras.context(view, wavelength, root_of(request)))

    def download(self, phase_id: str, fmt: str) -> Response:
        """``/phases/{phase_id}/download/{fmt}``: the structure as CIF, POSCAR or JSON."""
        if fmt not in downloads.FORMATS:
            return text(f"unknown format {fmt!r}: use one of {', '.join(downloads.FORMATS)}",
                         404)
        try:
            entry, structure = views.phase_structure(self.repo(), phase_id)
        except views.NotFound as exc:
            return text(str(exc), 404)
        form = downloads.FORMATS[fmt]
        body = form.write(structure, f"{entry.reduced_formula} {entry.id} ({entry.scheme})")
        name = downloads.filename(entry.reduced_formula, entry.id, fmt)
        return Response(body, media_type=form.media_type,
                        headers={"Content-Disposition": downloads.content_disposition(name)})


_DOWNLOADS = [("cif", "CIF"), ("poscar", "POSCAR"), ("json", "JSON (pymatgen)")]


def _phase_plotly() -> str:
    """The plotly.js of a phase page: its structure in 3D and its XRD pattern."""
    return static_files.plotly_script(structure_plot.TRACE_TYPES | xrd.TRACE_TYPES)


def find_system(request: Request, chemsys: str = "") -> Response:
    """``/systems?chemsys=``: the search box, redirected to the system's own address."""
    try:
        chemsys = normalise_chemsys(chemsys)
    except ValueError as exc:
        return error(request, 400, "Not a chemical system", str(exc))
    if not chemsys:
        return error(request, 400, "Not a chemical system", "name the elements, e.g. Li-Mn-O")
    return RedirectResponse(system_url(root_of(request))(chemsys), status_code=303)


def stylesheet() -> Response:
    return Response(assets.CSS, media_type="text/css; charset=utf-8")


def script() -> Response:
    return Response(assets.JS, media_type="text/javascript; charset=utf-8")


def make_router(db_url: str) -> APIRouter:
    """The explorer's routes over the database at ``db_url`` (opened at the first request)."""
    shared = Shared(db_url)
    pages = ExplorerPages(shared)
    system, phase = SystemExtras(shared), pages.extras
    finder, campaigns = SearchPages(shared), CampaignPages(shared)
    router = APIRouter(include_in_schema=False)
    html = {"response_class": HTMLResponse}
    get = ["GET"]
    router.add_api_route("/", pages.campaigns, methods=get, **html)
    router.add_api_route("/campaigns/compare", campaigns.compare, methods=get, **html)
    router.add_api_route("/campaigns/{name}", campaigns.campaign, methods=get, **html)
    router.add_api_route("/campaigns/{name}/metrics.svg", pages.campaign_metrics, methods=get)
    router.add_api_route("/systems", find_system, methods=get, **html)
    router.add_api_route("/systems/{chemsys}", pages.system, methods=get, **html)
    router.add_api_route("/systems/{chemsys}/hull.svg", pages.hull_diagram, methods=get)
    router.add_api_route("/systems/{chemsys}/hull.json", system.hull_json, methods=get)
    router.add_api_route("/systems/{chemsys}/novelty.json", system.novelty_json, methods=get)
    router.add_api_route("/systems/{chemsys}/phases.zip", system.phases_zip, methods=get)
    router.add_api_route("/phases/{phase_id}", pages.phase, methods=get, **html)
    router.add_api_route("/phases/{phase_id}/download/{fmt}", pages.download, methods=get)
    router.add_api_route("/phases/{phase_id}/novelty.json", phase.novelty_json, methods=get)
    router.add_api_route("/phases/{phase_id}/structure.json", phase.structure_json, methods=get)
    router.add_api_route("/phases/{phase_id}/xrd.json", phase.xrd_json, methods=get)
    router.add_api_route("/phases/{phase_id}/xrd.csv", phase.xrd_csv, methods=get)
    router.add_api_route("/search", finder.search, methods=get, **html)
    router.add_api_route("/search/novelty.json", finder.novelty_json, methods=get)
    router.add_api_route("/search/phases.zip", finder.phases_zip, methods=get)
    router.add_api_route("/explorer/assets/explorer.css", stylesheet, methods=get)
    router.add_api_route("/explorer/assets/explorer.js", script, methods=get)
    router.add_api_route("/explorer/assets/{name}", static_files.script, methods=get)
    return router
