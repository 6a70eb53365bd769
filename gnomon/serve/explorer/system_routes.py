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
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element

from gnomon.pipeline.spacegroup import stored_spacegroup
from gnomon.pipeline.thermo.hull import subsystems
from gnomon.pipeline.thermo.phase_query import normalise_chemsys
from gnomon.serve.explorer import archive, hull_plot, views
from gnomon.serve.explorer.web import Shared, attachment, figure_json, json_text, root_of, text
from gnomon.storage import Repository

Within = Annotated[float, Query(ge=0, description="eV/atom; inf lists every phase")]


def hull_points(repo: Repository, chemsys: str, scheme: str, within: float, root: str):
    """(the hull, the points of the phases within ``within`` eV/atom of it) of ``chemsys`` in
    ``scheme``, from the stored phases: the hull is a PhaseDiagram of the stable ones (its
    vertices), each point a phase with its entry's space group, source and campaign.
    (None, []) where an element has no reference (no stable phase of its own)."""
    systems = subsystems(chemsys)
    phases = list(repo.find("phases", {"scheme": scheme, "chemsys": systems}))
    compositions: dict[str, Composition] = {}  # formulas repeat: parse each once

    def composition(formula: str) -> Composition:
        if formula not in compositions:
            compositions[formula] = Composition(formula)
        return compositions[formula]

    stable = [p for p in phases if p.get("is_stable")]
    elements = chemsys.split("-")
    if not {p["chemsys"] for p in stable} >= set(elements):
        return None, []
    pd = PhaseDiagram([PDEntry(composition(p["reduced_formula"]), p["energy_per_atom"]
                               * composition(p["reduced_formula"]).num_atoms)
                       for p in stable], elements=[Element(el) for el in elements])
    limit = math.inf if math.isinf(within) else within + 1e-12
    shown = [p for p in phases if p.get("e_above_hull") is not None
             and p["e_above_hull"] <= limit]
    entries = {d["id"]: d for d in repo.find("entries", {"id": [p["id"] for p in shown]})}
    points = []
    for p in shown:
        d = entries.get(p["id"], {})
        points.append(hull_plot.HullPoint(
            id=p["id"], url=f"{root}/phases/{quote(p['id'], safe='')}",
            formula=p["reduced_formula"],
            spacegroup=stored_spacegroup(d.get("data"), d.get("structure")),
            e_above_hull=p["e_above_hull"], stable=bool(p.get("is_stable")),
            source=d.get("source"), campaign=d.get("campaign"),
            composition=composition(p["reduced_formula"]),
            formation_energy=p.get("formation_energy_per_atom")))
    return pd, points


class SystemExtras:
    """The handlers of a system page's figure, facts and archive."""

    def __init__(self, shared: Shared):
        self.shared = shared

    def _check(self, chemsys: str, scheme: str | None, within: float, every_row: bool = False):
        """(canonical chemsys, the page's view) or a text answer saying what is wrong."""
        try:
            chemsys = normalise_chemsys(chemsys)
            return chemsys, self.shared.system_view(chemsys, scheme, within, every_row)
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
                     within: Within = views.NEAR_STABLE, rows: str | None = None) -> Response:
        """``/systems/{chemsys}/novelty.json``: the novelty of each listed phase, by id."""
        chemsys, view = self._check(chemsys, scheme, within, rows == "all")
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
                f"({len(view.window)} phases), from gnomon serve.\n"
                "energies.csv: one row a phase (eV/atom); cif/: the relaxed structures.")
        body = archive.phases_zip(self.shared.repo(), view.window, note)
        return attachment(body, "application/zip",
                          archive.archive_name(f"{chemsys}_{view.scheme}"))
