"""``/search``: phases by formula, elements, energy, campaign, scheme and novelty, through the
server's own OPTIMADE ``/structures`` (see :mod:`gnomon.serve.explorer.search`), paged and
sorted there; its results' novelty; and the results as one zip."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from optimade.server.entry_collections import EntryCollection

from gnomon.pipeline.thermo.phase_query import phase_row
from gnomon.serve.explorer import archive, search
from gnomon.serve.explorer.facts import NoveltyFact
from gnomon.serve.explorer.web import Shared, attachment, error, json_text, page, root_of, text
from gnomon.storage import Entry, Phase, Repository

COLUMNS = (("formula", "formula"), ("chemsys", "chemsys"), ("spacegroup", "space group"),
           ("e_above_hull", "E above hull (eV/atom)"),
           ("formation_energy", "formation energy (eV/atom)"), ("nelements", "elements"),
           ("nsites", "sites"), ("novelty", "novelty"), ("scheme", "scheme"),
           ("campaign", "campaign"))
NUMERIC = {"e_above_hull", "formation_energy", "nelements", "nsites"}


@dataclass
class SearchResult:
    filter: str
    sort: str
    api_url: str
    total: int
    page: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    novelty_note: str | None = None

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / search.PER_PAGE))

    @property
    def first(self) -> int:
        return (self.page - 1) * search.PER_PAGE + 1

    @property
    def last(self) -> int:
        return min(self.total, self.page * search.PER_PAGE)


def result_rows(repo: Repository, ids: list[str]) -> list[dict[str, Any]]:
    """Table rows of the structures ``ids`` in that order: the phase's row with the entry's
    campaign and number of elements (an entry not on a hull yet has a row without energies)."""
    if not ids:
        return []
    phases = {p.id: p for p in repo.query(Phase, {"id": ids})}
    entries = {e.id: e for e in repo.query(Entry, {"id": ids})}
    rows = []
    for i in ids:
        entry, phase = entries.get(i), phases.get(i)
        if entry is None:
            continue
        if phase is None:
            phase = Phase(id=entry.id, scheme=entry.scheme, chemsys=entry.chemsys,
                          reduced_formula=entry.reduced_formula,
                          energy_per_atom=entry.energy_per_atom)
        rows.append({**phase_row(phase, entry), "campaign": entry.campaign,
                     "nelements": len(entry.elements)})
    return rows


class SearchPages:
    """The handlers of the search page, its novelty cells and its archive."""

    def __init__(self, shared: Shared):
        self.shared = shared

    @staticmethod
    def _collection(request: Request) -> EntryCollection | None:
        collections = getattr(request.app.state, "entry_collections", None) or {}
        return collections.get("structures")

    def _matches(self, collection: EntryCollection, form: search.SearchForm, limit: int,
                 offset: int) -> tuple[list[dict[str, Any]], int, str | None]:
        """(rows of one page, number of matches, a note on the novelty check)."""
        repo = self.shared.repo()
        filter_, sort = search.optimade_filter(form), search.optimade_sort(form)
        if not form.novelty:
            ids, total = search.run(collection, filter_, sort, limit, offset)
            return result_rows(repo, ids), total, None
        ids, total = search.run(collection, filter_, sort, search.NOVELTY_SCAN, 0)
        rows = result_rows(repo, ids)
        facts = self.shared.novelty.get(repo, rows)
        kept = [r for r in rows if facts[r["id"]].flag == form.novelty]
        scope = (f"all {total} matches" if total <= len(ids)
                 else f"the first {len(ids)} of {total} matches in this order")
        note = (f"Novelty is not an OPTIMADE field: the explorer checked it on {scope} of the "
                f"filter; {len(kept)} are {form.novelty}.")
        return kept[offset:offset + limit], len(kept), note

    def search(self, request: Request) -> HTMLResponse:
        """``/search``: the form, and the results of the search it describes."""
        repo = self.shared.repo()
        context: dict[str, Any] = {
            "form": search.SearchForm(), "result": None, "error": None, "facts_src": None,
            "novelty": {}, "campaigns": sorted(repo.distinct("entries", "campaign") or []),
            "schemes": repo.schemes(), "novelty_flags": search.NOVELTY_FLAGS,
            "columns": COLUMNS, "numeric": NUMERIC, "sorts": search.SORTS,
            "max_download": search.NOVELTY_SCAN,
        }
        context["campaigns"] = [c for c in context["campaigns"] if c]
        try:
            form = context["form"] = search.parse_form(request.query_params)
            if not request.query_params:
                return page(request, "search.html", **context)
            collection = self._collection(request)
            if collection is None:
                return error(request, 404, "No search here",
                             "search runs through gnomon serve's OPTIMADE API, which this "
                             "server does not have")
            offset = (form.page - 1) * search.PER_PAGE
            rows, total, note = self._matches(collection, form, search.PER_PAGE, offset)
        except search.SearchError as exc:
            context["error"] = str(exc)
            return page(request, "search.html", status=400, **context)
        filter_, sort = search.optimade_filter(form), search.optimade_sort(form)
        context["result"] = SearchResult(
            filter=filter_, sort=sort, total=total, page=form.page, rows=rows,
            api_url=search.api_url(root_of(request), filter_, sort, search.PER_PAGE,
                                   0 if form.novelty else offset),
            novelty_note=note)
        known = self.shared.novelty.peek(repo, [r["id"] for r in rows])
        context["novelty"] = known
        if len(known) < len(rows):
            context["facts_src"] = f"{root_of(request)}/search/novelty.json?{form.query()}"
        return page(request, "search.html", **context)

    def _page_rows(self, request: Request):
        form = search.parse_form(request.query_params)
        collection = self._collection(request)
        if collection is None:
            raise search.SearchError("search runs through gnomon serve's OPTIMADE API, which "
                                     "this server does not have")
        return form, collection

    def novelty_json(self, request: Request) -> Response:
        """``/search/novelty.json?<the search>``: the novelty of the page's rows, by id."""
        try:
            form, collection = self._page_rows(request)
            offset = (form.page - 1) * search.PER_PAGE
            rows, _, _ = self._matches(collection, form, search.PER_PAGE, offset)
        except search.SearchError as exc:
            return text(str(exc), 400)
        facts: dict[str, NoveltyFact] = self.shared.novelty.get(self.shared.repo(), rows)
        return json_text(json.dumps({i: f.as_json() for i, f in facts.items()}))

    def phases_zip(self, request: Request) -> Response:
        """``/search/phases.zip?<the search>``: the matches' CIFs and energies (at most
        :data:`search.NOVELTY_SCAN`, one page of the API)."""
        try:
            form, collection = self._page_rows(request)
            rows, total, note = self._matches(collection, form, search.NOVELTY_SCAN, 0)
        except search.SearchError as exc:
            return text(str(exc), 400)
        filter_ = search.optimade_filter(form)
        lines = [f"gnomon serve search: {len(rows)} of {total} matching phases.",
                 f"OPTIMADE filter: {filter_ or '(none)'}",
                 f"sort: {search.optimade_sort(form)}", *([note] if note else []),
                 "energies.csv: one row a phase (eV/atom); cif/: the relaxed structures."]
        body = archive.phases_zip(self.shared.repo(), [r["id"] for r in rows], "\n".join(lines))
        return attachment(body, "application/zip", "search.zip")
