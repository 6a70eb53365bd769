"""The search page's form as an OPTIMADE filter, run by the server's own ``/structures``.

A search is the filter a user could send to ``/v1/structures`` themselves: the page builds it
from the form (formula, elements with HAS ALL / HAS ONLY / HAS ANY, number of elements,
E above hull, campaign, scheme, on the hull), shows it, links the API request that runs it,
and runs it through the same collection the API answers from. A filter typed in the form's
``filter`` box is run as it is. Novelty is no OPTIMADE field (it is computed, not stored):
the explorer checks it on the phases the filter returns, at most :data:`NOVELTY_SCAN` of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from lark.exceptions import VisitError
from optimade.exceptions import OptimadeHTTPException
from optimade.server.entry_collections import EntryCollection
from optimade.server.query_params import EntryListingQueryParams
from pymatgen.core import Composition, Element

from gnomon.storage.optimade.limits import MAX_PAGE_LIMIT
from gnomon.storage.optimade.resources import formula_reduced

PER_PAGE = 50
NOVELTY_SCAN = MAX_PAGE_LIMIT  # matches a novelty search checks (one page of the API)
MODES = {"all": "HAS ALL", "only": "HAS ONLY", "any": "HAS ANY"}
NOVELTY_FLAGS = ("new", "known", "ordering-of-disordered", "imported", "reference")
#: sortable columns: form key -> (OPTIMADE field, heading)
SORTS: dict[str, tuple[str, str]] = {
    "formula": ("chemical_formula_reduced", "formula (OPTIMADE)"),
    "e_above_hull": ("_gnomon_e_above_hull", "E above hull (eV/atom)"),
    "formation_energy": ("_gnomon_formation_energy_per_atom", "formation energy (eV/atom)"),
    "nelements": ("nelements", "elements"),
    "nsites": ("nsites", "sites"),
    "scheme": ("_gnomon_scheme", "scheme"),
    "campaign": ("_gnomon_campaign", "campaign"),
}


class SearchError(ValueError):
    """A form value that makes no search; the message names the field and the problem."""


@dataclass(frozen=True)
class SearchForm:
    formula: str = ""
    elements: str = ""
    mode: str = "all"
    nelements_min: int | None = None
    nelements_max: int | None = None
    max_e_above_hull: float | None = None
    campaign: str = ""
    scheme: str = ""
    stable: bool = False
    novelty: str = ""
    filter: str = ""  # an OPTIMADE filter typed by the user: run as it is
    sort: str = "e_above_hull"
    descending: bool = False
    page: int = 1

    @property
    def empty(self) -> bool:
        return self == SearchForm(sort=self.sort, descending=self.descending, page=self.page)

    def query(self, **changes: Any) -> str:
        """The form as the search page's query string (with ``changes``), empty fields left out."""
        form = replace(self, **changes)
        params: dict[str, Any] = {}
        for key, value in form.__dict__.items():
            default = getattr(SearchForm, key)
            if value != default and value not in ("", None, False):
                params[key] = "1" if value is True else value
        return urlencode(params)


def _int(params: Mapping[str, str], key: str, lo: int, hi: int) -> int | None:
    text = params.get(key, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise SearchError(f"{key}: {text!r} is not a whole number") from None
    if not lo <= value <= hi:
        raise SearchError(f"{key}: {value} is outside {lo} to {hi}")
    return value


def _float(params: Mapping[str, str], key: str) -> float | None:
    text = params.get(key, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise SearchError(f"{key}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise SearchError(f"{key}: give a non-negative number of eV/atom, not {text!r}")
    return value


def parse_form(params: Mapping[str, str]) -> SearchForm:
    """The search form from a request's query parameters; SearchError names a bad field."""
    mode = params.get("mode", "all") or "all"
    if mode not in MODES:
        raise SearchError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    novelty = params.get("novelty", "").strip()
    if novelty and novelty not in NOVELTY_FLAGS:
        raise SearchError(f"novelty: {novelty!r} is not one of {', '.join(NOVELTY_FLAGS)}")
    sort = params.get("sort", "e_above_hull") or "e_above_hull"
    if sort not in SORTS:
        raise SearchError(f"sort: {sort!r} is not one of {', '.join(SORTS)}")
    return SearchForm(
        formula=params.get("formula", "").strip(), elements=params.get("elements", "").strip(),
        mode=mode, nelements_min=_int(params, "nelements_min", 1, 118),
        nelements_max=_int(params, "nelements_max", 1, 118),
        max_e_above_hull=_float(params, "max_e_above_hull"),
        campaign=params.get("campaign", "").strip(), scheme=params.get("scheme", "").strip(),
        stable=params.get("stable", "") in ("1", "on", "true"), novelty=novelty,
        filter=params.get("filter", "").strip(), sort=sort,
        descending=params.get("descending", "") in ("1", "on", "true"),
        page=_int(params, "page", 1, 10**6) or 1,
    )


def quoted(text: str) -> str:
    """An OPTIMADE string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def element_list(text: str) -> list[str]:
    symbols = [s for s in re.split(r"[\s,;\-]+", text) if s]
    for s in symbols:
        if not Element.is_valid_symbol(s):
            raise SearchError(f"elements: {s!r} is not an element symbol")
    return sorted(set(symbols), key=symbols.index)


def reduced_formula(text: str) -> str:
    """OPTIMADE's reduced formula of what a user typed (``NaCl`` -> ``ClNa``)."""
    try:
        comp = Composition(text)
    except (ValueError, KeyError) as exc:
        raise SearchError(f"formula: {text!r} is not a chemical formula ({exc})") from None
    if comp.num_atoms <= 0:
        raise SearchError(f"formula: {text!r} is not a chemical formula")
    return formula_reduced({str(el): amt for el, amt in comp.items()})


def optimade_filter(form: SearchForm) -> str:
    """The OPTIMADE filter of the form's fields (the typed filter, when there is one)."""
    if form.filter:
        return form.filter
    parts = []
    if form.formula:
        parts.append(f"chemical_formula_reduced={quoted(reduced_formula(form.formula))}")
    if form.elements:
        symbols = element_list(form.elements)
        parts.append(f"elements {MODES[form.mode]} {','.join(quoted(s) for s in symbols)}")
    lo, hi = form.nelements_min, form.nelements_max
    if lo is not None and hi is not None and lo > hi:
        raise SearchError(f"number of elements: at least {lo} and at most {hi} match nothing")
    if lo is not None and lo == hi:
        parts.append(f"nelements={lo}")
    else:
        parts += [f"nelements>={lo}"] if lo is not None else []
        parts += [f"nelements<={hi}"] if hi is not None else []
    if form.max_e_above_hull is not None:
        parts.append(f"_gnomon_e_above_hull<={form.max_e_above_hull!r}")
    if form.stable:
        parts.append("_gnomon_is_stable=1")
    if form.campaign:
        parts.append(f"_gnomon_campaign={quoted(form.campaign)}")
    if form.scheme:
        parts.append(f"_gnomon_scheme={quoted(form.scheme)}")
    return " AND ".join(parts)


def optimade_sort(form: SearchForm) -> str:
    field = SORTS[form.sort][0]
    return f"-{field}" if form.descending else field


def api_url(root: str, filter_: str, sort: str, limit: int, offset: int) -> str:
    params = {"filter": filter_, "sort": sort, "page_limit": limit, "page_offset": offset}
    return f"{root}/v1/structures?" + urlencode({k: v for k, v in params.items() if v != ""})


def run(collection: EntryCollection, filter_: str, sort: str, limit: int,
        offset: int) -> tuple[list[str], int]:
    """(ids of one page, number of matches) of the filter, as ``/v1/structures`` answers it;
    SearchError carries the API's own message for a filter it refuses."""
    params = EntryListingQueryParams(filter=filter_, sort=sort, page_limit=limit,
                                     page_offset=offset, response_fields="id")
    try:
        results, total, *_ = collection.find(params)
    except VisitError as exc:  # the filter's transformer raised: its own exception says why
        raise SearchError(refusal(exc.orig_exc)) from None
    except (OptimadeHTTPException, NotImplementedError) as exc:
        raise SearchError(refusal(exc)) from None
    rows = results if isinstance(results, list) else [results] if results else []
    return [r["id"] for r in rows], int(total or 0)


def refusal(exc: BaseException) -> str:
    """Why the API refused a filter, in one line."""
    if isinstance(exc, OptimadeHTTPException):
        return f"the OPTIMADE filter was refused ({exc.title}): {exc.detail}"
    return f"the OPTIMADE filter asks for what gnomon does not support: {exc}"
