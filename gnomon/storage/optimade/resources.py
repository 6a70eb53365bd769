"""A stored entry and its phase, as an OPTIMADE structure resource.

One function, :func:`structure_row`, makes the flat document both query backends keep (the
SQLite view and the MongoDB view collection, through :func:`served_rows`), so a filter
means the same thing on either.
Field names are the *backend* names of ``optimade``'s resource mapper: OPTIMADE fields as the
specification names them, gnomon's own fields without their ``_gnomon_`` prefix (the mapper
adds it on the way out, from :data:`PROVIDER_FIELDS`).

Formulas follow the OPTIMADE definitions, not pymatgen's: ``chemical_formula_reduced`` lists
elements alphabetically (``Li2O``, ``ClNa``), ``chemical_formula_anonymous`` orders amounts
largest first (``A2B``); ``chemical_formula_descriptive`` is the stored cell's formula.
"""

from __future__ import annotations

import logging
import math
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import reduce
from typing import Any

from gnomon.storage.reader import PhaseReader

log = logging.getLogger(__name__)

PROVIDER_PREFIX = "gnomon"

#: gnomon's provider fields: name (without prefix), OPTIMADE type, unit, description.
PROVIDER_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "e_above_hull", "type": "float", "unit": "eV/atom",
     "description": "Energy above the convex hull of its energy scheme and chemical system "
                    "(0 on the hull)."},
    {"name": "formation_energy_per_atom", "type": "float", "unit": "eV/atom",
     "description": "Formation energy per atom from the elemental references of its energy "
                    "scheme."},
    {"name": "decomposition_energy", "type": "float", "unit": "eV/atom",
     "description": "Decomposition (phase separation) energy: negative for phases on the hull, "
                    "the distance to the hull without this phase."},
    {"name": "is_stable", "type": "boolean",
     "description": "Whether the phase is on the hull of its energy scheme. The OPTIMADE filter "
                    "grammar has no booleans: filter with _gnomon_is_stable=1 (on the hull) "
                    "or =0."},
    {"name": "energy_per_atom", "type": "float", "unit": "eV/atom",
     "description": "Total energy per atom with the energy scheme's corrections applied "
                    "(the hull's energy)."},
    {"name": "uncorrected_energy_per_atom", "type": "float", "unit": "eV/atom",
     "description": "Total energy per atom as the code computed it, before corrections."},
    {"name": "scheme", "type": "string",
     "description": "Energy scheme of the energy (for example mlip-chgnet-0.3.0, vasp-pbe-mp2020); "
                    "hulls are built within one scheme."},
    {"name": "campaign", "type": "string",
     "description": "Discovery campaign that found it (null when imported)."},
    {"name": "round", "type": "integer", "description": "Campaign round that relaxed it."},
    {"name": "source", "type": "string",
     "description": "Where the energy came from (a file, a provider URL, an engine)."},
    {"name": "calculation_id", "type": "string",
     "description": "The gnomon calculation that produced the entry."},
)

PROVIDER_FIELD_NAMES = tuple(f["name"] for f in PROVIDER_FIELDS)

#: scalar fields each backend keeps as a column / top-level value (backend names), with type
SCALAR_FIELDS: dict[str, str] = {
    "id": "string",
    "last_modified": "timestamp",
    "nelements": "integer",
    "nsites": "integer",
    "nperiodic_dimensions": "integer",
    "chemical_formula_reduced": "string",
    "chemical_formula_anonymous": "string",
    "chemical_formula_descriptive": "string",
    **{f["name"]: f["type"] for f in PROVIDER_FIELDS},
}

#: list fields whose members can be filtered with HAS / HAS ALL / HAS ANY / HAS ONLY
LIST_FIELDS: tuple[str, ...] = (
    "elements", "species_at_sites", "structure_features", "dimension_types"
)

#: list fields every row holds whose members filters cannot reach (IS KNOWN is always true)
OPAQUE_LIST_FIELDS: tuple[str, ...] = (
    "elements_ratios", "lattice_vectors", "cartesian_site_positions", "species"
)

#: fields whose value is the same in every row, answered without asking a backend
CONSTANT_FIELDS: dict[str, str] = {"type": "structures"}

#: the scalar field that holds a list field's LENGTH
LENGTH_FIELDS: dict[str, str] = {
    "elements": "nelements",
    "elements_ratios": "nelements",
    "species_at_sites": "nsites",
    "cartesian_site_positions": "nsites",
    "structure_features": "nstructure_features",
    "dimension_types": "nperiodic_dimensions",
}


def _amount(n: int) -> str:
    return "" if n == 1 else str(n)


def integer_amounts(composition: dict[str, float]) -> dict[str, int]:
    """The composition as whole numbers of atoms (a cell always holds whole atoms)."""
    return {el: int(round(amt)) for el, amt in composition.items() if round(amt) > 0}


def reduced_amounts(composition: dict[str, float]) -> dict[str, int]:
    counts = integer_amounts(composition)
    divisor = reduce(math.gcd, counts.values())
    return {el: n // divisor for el, n in counts.items()}


def formula_reduced(composition: dict[str, float]) -> str:
    """OPTIMADE's reduced formula: elements in alphabetical order, amounts divided by their gcd."""
    return _reduced_formula(reduced_amounts(composition))


def _reduced_formula(reduced: dict[str, int]) -> str:
    return "".join(f"{el}{_amount(reduced[el])}" for el in sorted(reduced))


def _anonymous_symbols():
    yield from string.ascii_uppercase
    for first in string.ascii_uppercase:
        for second in string.ascii_lowercase:
            yield first + second


def formula_anonymous(composition: dict[str, float]) -> str:
    """OPTIMADE's anonymous formula: reduced amounts, largest first, named A, B, C, ..."""
    return _anonymous_formula(reduced_amounts(composition))


def _anonymous_formula(reduced: dict[str, int]) -> str:
    amounts = sorted(reduced.values(), reverse=True)
    symbols = _anonymous_symbols()
    return "".join(f"{sym}{_amount(n)}" for sym, n in zip(symbols, amounts, strict=False))


def formula_descriptive(composition: dict[str, float]) -> str:
    """The cell's formula, elements in alphabetical order (``Li6Mn2O6``)."""
    return _reduced_formula(integer_amounts(composition))


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    # whole seconds: RFC 3339 as OPTIMADE clients compare it (optimade-python-tools #606)
    return stamp.astimezone(UTC).replace(microsecond=0)


def _site_element(site: dict[str, Any]) -> str:
    species = site["species"]
    if len(species) != 1 or abs(float(species[0].get("occu", 1.0)) - 1.0) > 1e-6:
        raise ValueError("disordered site (gnomon entries hold ordered structures)")
    return species[0]["element"]


def structure_row(entry: dict[str, Any], phase: dict[str, Any] | None) -> dict[str, Any] | None:
    """The flat OPTIMADE document of a stored entry (``Entry.to_doc()``) and its phase, or None
    for an entry stored without a structure (a composition-only energy is no structure
    resource)."""
    structure = entry.get("structure")
    if not structure:
        return None
    phase = phase or {}
    sites = structure["sites"]
    species_at_sites = [_site_element(site) for site in sites]
    lattice = structure["lattice"]["matrix"]
    counts = integer_amounts(entry["composition"])
    divisor = reduce(math.gcd, counts.values())
    reduced = {el: n // divisor for el, n in counts.items()}
    total = sum(counts.values())
    elements = sorted(counts)
    nsites = len(sites)
    stamps = [s for s in (_timestamp(entry.get("created_at")),
                          _timestamp(phase.get("updated_at"))) if s]
    is_stable = phase.get("is_stable")
    return {
        "id": entry["id"],
        "last_modified": max(stamps) if stamps else None,
        "elements": elements,
        "nelements": len(elements),
        "elements_ratios": [counts[el] / total for el in elements],
        "chemical_formula_descriptive": _reduced_formula(counts),
        "chemical_formula_reduced": _reduced_formula(reduced),
        "chemical_formula_anonymous": _anonymous_formula(reduced),
        "dimension_types": [1, 1, 1],
        "nperiodic_dimensions": 3,
        "lattice_vectors": [[float(x) for x in row] for row in lattice],
        "cartesian_site_positions": [[float(x) for x in site["xyz"]] for site in sites],
        "nsites": nsites,
        "species": [
            {"name": el, "chemical_symbols": [el], "concentration": [1.0]} for el in elements
        ],
        "species_at_sites": species_at_sites,
        "structure_features": [],
        "nstructure_features": 0,
        "e_above_hull": phase.get("e_above_hull"),
        "formation_energy_per_atom": phase.get("formation_energy_per_atom"),
        "decomposition_energy": phase.get("decomposition_energy"),
        "is_stable": None if is_stable is None else bool(is_stable),
        "energy_per_atom": entry.get("energy_per_atom"),
        "uncorrected_energy_per_atom": (
            entry["uncorrected_energy"] / total
            if entry.get("uncorrected_energy") is not None else None
        ),
        "scheme": entry.get("scheme"),
        "campaign": entry.get("campaign"),
        "round": entry.get("round"),
        "source": entry.get("source"),
        "calculation_id": entry.get("calculation_id"),
    }


def served_rows(reader: PhaseReader) -> Iterator[dict[str, Any]]:
    """The row of every entry ``reader`` yields, as a view keeps it (see :func:`served_row`)."""
    for entry, phase in reader.entries_with_phases():
        row = served_row(entry, phase)
        if row is not None:
            yield row


def served_row(entry: dict[str, Any], phase: dict[str, Any] | None) -> dict[str, Any] | None:
    """The row a view keeps of an entry and its phase, or None for one it does not serve: an
    entry without a structure, or one that cannot be shown (a disordered site: logged)."""
    try:
        return structure_row(entry, phase)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("entry %s is not served: %s", entry.get("id"), exc)
        return None


#: fields of a row that are not part of the OPTIMADE resource (bookkeeping for LENGTH queries)
INTERNAL_FIELDS = frozenset({"nstructure_features"})
