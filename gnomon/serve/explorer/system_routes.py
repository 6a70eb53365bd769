"""A system page's interactive hull, the novelty of its phases, and its phases as one zip.

The hull figure and the zip are made from the same window of phases the page lists (one
energy scheme, E above hull up to ``within``), so what the figure shows, the table lists and
the archive holds agree. Figures are remembered per window and number of entries (entries are
only ever added, so the count says whether a figure is current).
"""

from __future__ import annotations

import json
import math
from typing import Annotated
from urllib.parse import quote

from fastapi import Query, Request
from fastapi.responses import Response
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from gnomon.pipeline.spacegroup import stored_spacegroup
from gnomon.pipeline.thermo.hull import phase_diagram, subsystems
from gnomon.pipeline.thermo.phase_query import normalise_chemsys
from gnomon.serve.explorer import archive, hull_plot, views
from gnomon.serve.explorer.web import Shared, attachment, figure_json, json_text, root_of, text
from gnomon.storage import Repository

Within = Annotated[float, Query(ge=0, description="eV/atom; inf lists every phase")]


def hull_points(repo: Repository, chemsys: str, scheme: str, within: float, root: str):
    """(PhaseDiagram, {id: HullPoint}) of the system's entries in ``scheme``, the points those
    within ``within`` eV/atom of the hull; (None, {}) where an element has no reference."""
    docs = list(repo.find("entries", {"scheme": scheme, "chemsys": subsystems(chemsys)}))
    pd = phase_diagram([ComputedEntry(Composition(d["composition"]), d["energy"],
                                      entry_id=d["id"]) for d in docs], chemsys)
    if pd is None:
        return None, {}
    phases = {p["id"]: p for p in repo.find("phases", {"scheme": scheme,
                                                       "chemsys": subsystems(chemsys)})}
    limit = math.inf if math.isinf(within) else within + 1e-12
    points = {}
    for d in docs:
        ph = phases.get(d["id"])
        e_hull = ph.get("e_above_hull") if ph else None
        if e_hull is None or e_hull > limit:
            continue
        points[d["id"]] = hull_plot.HullPoint(
            id=d["id"], url=f"{root}/phases/{quote(d['id'], safe='')}",
            formula=d["reduced_formula"],
            spacegroup=stored_spacegroup(d.get("data"), d.get("structure")),
            e_above_hull=e_hull, stable=bool(ph.get("is_stable")), source=d.get("source"),
            campaign=d.get("campaign"))
    return pd, points


class SystemExtras:
    """The handlers of a system page's figure, facts and archive."""

    def __init__(self, shared: Shared):
        self.shared = shared

    def _check(self, chemsys: str, scheme: str | None, within: float):
        """(canonical chemsys, the page's view) or a text answer saying what is wrong."""
        try:
            chemsys = normalise_chemsys(chemsys)
            return chemsys, views.system_view(self.shared.repo(), chemsys, scheme, within)
        except views.NotFound as exc:
            return None, text(str(exc), 404)
        except ValueError as exc:
            return None, text(str(exc), 400)

    def hull_json(self, request: Request, chemsys: str, scheme: str | None = None,
                  within: Within = views.NEAR_STABLE) -> Response:
        """``/systems/{chemsys}/hull.json``: the interactive hull (plotly figure JSON)."""
        chemsys, view = self._check(chemsys, scheme, within)
        if chemsys is None:
            return view
        if not view.plottable:
            return text(f"hull diagrams need 2 to 4 elements; {chemsys} has {view.n_elements}",
                        400)
        repo, root = self.shared.repo(), root_of(request)
        count = repo.count("entries", {"scheme": view.scheme, "chemsys": subsystems(chemsys)})

        def make() -> str | None:
            pd, points = hull_points(repo, chemsys, view.scheme, within, root)
            return None if pd is None else figure_json(hull_plot.hull_figure(pd, points))

        body = self.shared.cache.get_or_make(
            ("hull", root, chemsys, view.scheme, within, count), make)
        if body is None:
            return text(f"no hull for {chemsys} in scheme {view.scheme}: an element has no "
                        "reference entry", 404)
        return json_text(body)

    def novelty_json(self, chemsys: str, scheme: str | None = None,
                     within: Within = views.NEAR_STABLE) -> Response:
        """``/systems/{chemsys}/novelty.json``: the novelty of each listed phase, by id."""
        chemsys, view = self._check(chemsys, scheme, within)
        if chemsys is None:
            return view
        facts = self.shared.novelty.get(self.shared.repo(), view.rows)
        return json_text(json.dumps({i: f.as_json() for i, f in facts.items()}))

    def phases_zip(self, chemsys: str, scheme: str | None = None,
                   within: Within = views.NEAR_STABLE) -> Response:
        """``/systems/{chemsys}/phases.zip``: the listed phases' CIFs and energies."""
        chemsys, view = self._check(chemsys, scheme, within)
        if chemsys is None:
            return view
        window = "every phase" if math.isinf(within) else f"phases within {within:g} eV/atom"
        note = (f"{chemsys}, energy scheme {view.scheme}: {window} of the hull "
                f"({len(view.rows)} phases), from gnomon serve.\n"
                "energies.csv: one row a phase (eV/atom); cif/: the relaxed structures.")
        body = archive.phases_zip(self.shared.repo(), [r["id"] for r in view.rows], note)
        return attachment(body, "application/zip",
                          archive.archive_name(f"{chemsys}_{view.scheme}"))
