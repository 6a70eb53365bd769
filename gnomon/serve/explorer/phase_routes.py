"""A phase page's 3D structure, XRD pattern and CSV, and what its page says beyond the
numbers: novelty and lineage.

The XRD pattern of a phase and a wavelength is computed once and remembered (the page tables
its strongest peaks, its figure and its CSV read the same pattern).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response
from pymatgen.analysis.diffraction.xrd import WAVELENGTHS

from gnomon.serve.explorer import downloads, structure_plot, views, xrd
from gnomon.serve.explorer.facts import NoveltyFact
from gnomon.serve.explorer.lineage import lineage
from gnomon.serve.explorer.web import Shared, attachment, figure_json, json_text, root_of, text
from gnomon.storage import Phase


class PhaseExtras:
    """The handlers of a phase page's figures and pattern, and the context of its page."""

    def __init__(self, shared: Shared):
        self.shared = shared

    def _peaks(self, phase_id: str, structure, rad: xrd.Radiation) -> list[xrd.Peak]:
        return self.shared.cache.get_or_make(("xrd", phase_id, rad.wavelength),
                                             lambda: xrd.pattern(structure, rad))

    def _nearest_url(self, root: str, fact: NoveltyFact | None) -> str | None:
        if fact is None or not fact.nearest_id:
            return None
        if self.shared.repo().get(Phase, fact.nearest_id) is None:
            return None  # a known phase from a file, not a stored one
        return f"{root}/phases/{quote(fact.nearest_id, safe='')}"

    def novelty_json(self, request: Request, phase_id: str) -> Response:
        """``/phases/{id}/novelty.json``: the phase's novelty, checked now if not yet."""
        repo = self.shared.repo()
        try:
            view = views.phase_view(repo, phase_id)
        except views.NotFound as exc:
            return text(str(exc), 404)
        if view.structure is None:
            return text(f"phase {phase_id!r} has no stored structure to compare", 404)
        fact = self.shared.novelty.get(repo, [view.row])[view.phase.id]
        body = fact.details(self._nearest_url(root_of(request), fact))
        return json_text(json.dumps(body))

    def context(self, view: views.PhaseView, wavelength: str | None,
                root: str) -> dict[str, Any]:
        """What phase.html shows besides the phase's own record: its novelty, its lineage,
        the cells the viewer offers and the XRD pattern (``wavelength`` as the page got it)."""
        repo = self.shared.repo()
        out: dict[str, Any] = {
            "novelty": None, "nearest_url": None, "cells": structure_plot.CELLS,
            "lineage": lineage(repo, view.entry) if view.entry is not None else [],
            "wavelengths": list(WAVELENGTHS.items()), "wavelength_names": set(WAVELENGTHS),
            "xrd_error": None, "radiation": xrd.radiation(None), "strongest": [], "n_peaks": 0,
        }
        if view.structure is None:
            return out
        fact = self.shared.novelty.peek(repo, [view.phase.id]).get(view.phase.id)
        out["novelty"] = fact
        out["nearest_url"] = self._nearest_url(root, fact)
        try:
            out["radiation"] = xrd.radiation(wavelength)
        except ValueError as exc:
            out["xrd_error"] = f"{exc}; showing {xrd.DEFAULT}"
        peaks = self._peaks(view.phase.id, view.structure, out["radiation"])
        out["strongest"], out["n_peaks"] = xrd.strongest(peaks), len(peaks)
        return out

    def _structure(self, phase_id: str):
        try:
            return views.phase_structure(self.shared.repo(), phase_id)
        except views.NotFound as exc:
            return None, text(str(exc), 404)

    def structure_json(self, phase_id: str, cell: str = "conventional") -> Response:
        """``/phases/{id}/structure.json?cell=``: the 3D view (plotly figure JSON)."""
        if cell not in structure_plot.CELLS:
            return text(f"cell {cell!r}: use one of {', '.join(structure_plot.CELLS)}", 400)
        entry, structure = self._structure(phase_id)
        if entry is None:
            return structure
        body = self.shared.cache.get_or_make(
            ("structure", entry.id, cell),
            lambda: figure_json(structure_plot.structure_figure(structure, cell)))
        return json_text(body)

    def _pattern(self, phase_id: str, wavelength: str | None):
        try:
            rad = xrd.radiation(wavelength)
        except ValueError as exc:
            return None, None, text(str(exc), 400)
        entry, structure = self._structure(phase_id)
        if entry is None:
            return None, None, structure
        return entry, rad, self._peaks(entry.id, structure, rad)

    def xrd_json(self, phase_id: str, wavelength: str | None = None) -> Response:
        """``/phases/{id}/xrd.json?wavelength=``: the stick pattern (plotly figure JSON)."""
        entry, rad, peaks = self._pattern(phase_id, wavelength)
        if entry is None:
            return peaks
        return json_text(figure_json(xrd.xrd_figure(peaks, rad)))

    def xrd_csv(self, phase_id: str, wavelength: str | None = None) -> Response:
        """``/phases/{id}/xrd.csv?wavelength=``: every peak, as CSV."""
        entry, rad, peaks = self._pattern(phase_id, wavelength)
        if entry is None:
            return peaks
        title = f"{entry.reduced_formula} {entry.id} ({entry.scheme})"
        name = downloads.safe_stem(f"{entry.reduced_formula}_{entry.id}_xrd_{rad.value}") + ".csv"
        return attachment(xrd.csv_text(peaks, rad, title), "text/csv; charset=utf-8", name)
