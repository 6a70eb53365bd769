"""Structures (and their energies, where the provider gives them) from an OPTIMADE provider.

``gnomon db import https://provider/optimade --filter '...' --scheme S`` pages through the
provider's ``/v1/structures`` with the filter (following ``links.next``), turns each resource
into a pymatgen Structure, and sorts it into one of two piles:

* with an energy in the named provider field (``energy_field``; by default gnomon's own
  ``_gnomon_uncorrected_energy_per_atom``, so one gnomon server imports from another): an
  :class:`~gnomon.storage.Entry` of the given scheme, through the same ``make_entry`` checks
  as every file import;
* without one: a :class:`~gnomon.storage.Candidate` (generator ``optimade``), a structure
  gnomon can relax or use as a SAPS template but has no energy for.

A resource that cannot be a structure (a disordered site, missing positions) is rejected with
the provider's id and the reason, like a bad record in a file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pymatgen.core import Lattice, Structure

from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.thermo.entries import EntryValidationError, check_structure, make_entry
from gnomon.pipeline.thermo.importing import ImportResult, Rejected
from gnomon.storage.documents import Candidate

log = logging.getLogger(__name__)

DEFAULT_ENERGY_FIELD = "_gnomon_uncorrected_energy_per_atom"
GENERATOR = "optimade"
_STRUCTURE_FIELDS = (
    "lattice_vectors",
    "cartesian_site_positions",
    "species_at_sites",
    "species",
    "chemical_formula_reduced",
)


class OptimadeImportError(RuntimeError):
    """The provider could not be queried (unreachable, not OPTIMADE, or it refused the filter)."""


@dataclass
class OptimadeImport:
    """What one import read: entries (with energies), candidates (without), rejects."""

    entries: ImportResult = field(default_factory=ImportResult)
    candidates: list[Candidate] = field(default_factory=list)
    pages: int = 0

    @property
    def rejected(self) -> list[Rejected]:
        return self.entries.rejected


def structures_url(base_url: str) -> str:
    """``.../v1/structures`` of a provider's base URL (given with or without ``/v1``)."""
    base = base_url.rstrip("/")
    if base.endswith("/structures"):
        return base
    if not base.rsplit("/", 1)[-1].startswith("v1"):
        base += "/v1"
    return base + "/structures"


def fetch_resources(
    base_url: str,
    filter_: str | None,
    response_fields: list[str],
    page_limit: int = 100,
    max_records: int | None = None,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
) -> Iterator[dict[str, Any]]:
    """Every structure resource matching ``filter_``, page by page."""
    params: dict[str, Any] = {
        "page_limit": page_limit,
        "response_fields": ",".join(response_fields),
    }
    if filter_:
        params["filter"] = filter_
    own = client is None
    client = client or httpx.Client(timeout=timeout, follow_redirects=True)
    url: str | None = structures_url(base_url)
    seen = 0
    try:
        while url:
            try:
                response = client.get(url, params=params)
            except httpx.HTTPError as exc:
                raise OptimadeImportError(f"cannot reach {url}: {exc}") from None
            if response.status_code != 200:
                raise OptimadeImportError(
                    f"{url} answered {response.status_code}: {_error_detail(response)}"
                )
            try:
                body = response.json()
            except ValueError:
                raise OptimadeImportError(
                    f"{url} did not answer JSON (is it an OPTIMADE base URL?)"
                ) from None
            for resource in body.get("data") or []:
                if max_records is not None and seen >= max_records:
                    return
                seen += 1
                yield resource
            more = (body.get("meta") or {}).get("more_data_available")
            nxt = (body.get("links") or {}).get("next")
            if isinstance(nxt, dict):
                nxt = nxt.get("href")
            url, params = (nxt, {}) if more and nxt else (None, {})
    finally:
        if own:
            client.close()


def _error_detail(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return (
            "; ".join(str(e.get("detail") or e.get("title")) for e in errors) or response.text[:300]
        )
    except ValueError:
        return response.text[:300]


def structure_from_resource(attributes: dict[str, Any]) -> Structure:
    """The pymatgen Structure of an OPTIMADE structure resource's attributes (ordered sites
    only)."""
    missing = [
        f
        for f in ("lattice_vectors", "cartesian_site_positions", "species_at_sites")
        if not attributes.get(f)
    ]
    if missing:
        raise ValueError(f"no {', '.join(missing)} in the resource")
    symbols: dict[str, str] = {}
    for sp in attributes.get("species") or []:
        chem = [s for s in sp.get("chemical_symbols", []) if s != "vacancy"]
        conc = sp.get("concentration") or [1.0]
        if len(chem) != 1 or abs(sum(conc) - 1.0) > 1e-6:
            raise ValueError(
                f"species {sp.get('name')!r} is disordered ({chem}, {conc}); "
                "gnomon keeps ordered structures"
            )
        symbols[sp["name"]] = chem[0]
    try:
        species = [symbols.get(name, name) for name in attributes["species_at_sites"]]
        return Structure(
            Lattice(attributes["lattice_vectors"]),
            species,
            attributes["cartesian_site_positions"],
            coords_are_cartesian=True,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a structure: {exc}") from None


def read_provider(
    base_url: str,
    filter_: str | None,
    scheme: str,
    energy_field: str = DEFAULT_ENERGY_FIELD,
    energy_per: Literal["atom", "cell"] = "atom",
    max_records: int | None = None,
    page_limit: int = 100,
    client: httpx.Client | None = None,
) -> OptimadeImport:
    """Entries and candidates from the provider's structures matching ``filter_``."""
    out = OptimadeImport()
    host = urlsplit(base_url).netloc or base_url
    fields = [*_STRUCTURE_FIELDS, energy_field]
    for resource in fetch_resources(
        base_url, filter_, fields, page_limit=page_limit, max_records=max_records, client=client
    ):
        rid = str(resource.get("id"))
        label = f"{host}:{rid}"
        attributes = resource.get("attributes") or {}
        out.entries.records += 1
        try:
            structure = structure_from_resource(attributes)
        except ValueError as exc:
            out.entries.rejected.append(Rejected(label, str(exc)))
            continue
        provenance = {
            "source": f"{structures_url(base_url)}/{rid}",
            "data": {"provider": base_url, "provider_id": rid},
        }
        energy = attributes.get(energy_field)
        if energy is None:
            try:
                check_structure(structure, label)
            except EntryValidationError as exc:
                out.entries.rejected.append(Rejected(exc.record, exc.problem))
                continue
            out.candidates.append(
                candidate_from_structure(
                    structure, GENERATOR, extra={"provider": base_url, "provider_id": rid}
                )
            )
            continue
        try:
            total = float(energy) * (len(structure) if energy_per == "atom" else 1)
            out.entries.entries.append(
                make_entry(
                    structure.composition,
                    total,
                    scheme,
                    structure=structure,
                    record=label,
                    **provenance,
                )
            )
        except EntryValidationError as exc:
            out.entries.rejected.append(Rejected(exc.record, exc.problem))
        except (TypeError, ValueError) as exc:
            out.entries.rejected.append(Rejected(label, f"{energy_field}={energy!r}: {exc}"))
    return out
