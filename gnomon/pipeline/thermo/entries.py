"""Entries: computed energies made into validated records of one energy scheme.

Everything that becomes an Entry passes through here, whether it came from a file import,
a relaxation or a benchmark, so the checks a materials scientist relies on (a finite energy,
a real cell, no overlapping atoms, an ordered structure, the scheme's corrections) hold for
every energy in the database.
"""

from __future__ import annotations

import math
from typing import Any

from pymatgen.core import Composition, Element, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from gnomon.pipeline.generation.identity import structure_hash
from gnomon.pipeline.generation.structure_checks import structure_problem
from gnomon.pipeline.thermo.schemes import apply_corrections, check_scheme
from gnomon.storage.documents import Entry, stable_hash


class EntryValidationError(ValueError):
    """A record that cannot become an entry; the message names the record and the problem."""

    def __init__(self, record: str, problem: str):
        self.record = record
        self.problem = problem
        super().__init__(f"{record}: {problem}")


def check_energy(energy: Any, record: str) -> float:
    if energy is None:
        raise EntryValidationError(record, "energy is missing")
    try:
        value = float(energy)
    except (TypeError, ValueError):
        raise EntryValidationError(record, f"energy {energy!r} is not a number") from None
    if not math.isfinite(value):
        raise EntryValidationError(record, f"energy is {value} (must be finite)")
    return value


def check_structure(structure: Structure, record: str) -> None:
    """Raise for a cell a relaxation or hull must not see: the one check every structure
    input makes (:func:`gnomon.pipeline.generation.structure_checks.structure_problem`)."""
    problem = structure_problem(structure)
    if problem is not None:
        raise EntryValidationError(record, problem)


def _entry_id(
    scheme: str, composition: Composition, energy: float, structure: Structure | None
) -> str:
    return stable_hash(
        {
            "scheme": scheme,
            "composition": {str(el): round(amt, 6) for el, amt in composition.items()},
            "energy": round(energy, 6),
            "structure": structure_hash(structure) if structure is not None else None,
        }
    )


def _checked_composition(
    composition: Composition | str, structure: Structure | None, record: str
) -> Composition:
    """The entry's element composition (oxidation states are not part of an energy's
    identity), or an error naming the record and what is wrong with it."""
    try:
        comp = Composition(composition) if structure is None else structure.composition
    except (ValueError, KeyError) as exc:
        raise EntryValidationError(record, f"composition {composition!r}: {exc}") from None
    unknown = [
        str(el)
        for el in comp.elements
        if not Element.is_valid_symbol(getattr(el, "symbol", str(el)))
    ]
    if unknown:
        raise EntryValidationError(
            record, f"composition {comp.formula!r} has unknown elements {unknown}"
        )
    comp = comp.element_composition
    if comp.num_atoms <= 0:
        raise EntryValidationError(record, "composition has no atoms")
    return comp


def make_entry(
    composition: Composition | str,
    energy: float,
    scheme: str,
    *,
    structure: Structure | None = None,
    record: str = "entry",
    parameters: dict[str, Any] | None = None,
    energy_adjustments: list | None = None,
    **provenance: Any,
) -> Entry:
    """An Entry of total (uncorrected) ``energy`` in eV, with the scheme's corrections applied.

    ``provenance`` fills Entry fields such as source, candidate_id, calculation_id,
    code_version, inputs_hash, campaign, round and data.
    """
    scheme = check_scheme(scheme)
    energy = check_energy(energy, record)
    comp = _checked_composition(composition, structure, record)
    if structure is not None:
        check_structure(structure, record)
    parameters = dict(parameters or {})
    computed = (
        ComputedStructureEntry(structure, energy, parameters=parameters)
        if structure is not None
        else ComputedEntry(
            comp, energy, parameters=parameters, energy_adjustments=energy_adjustments
        )
    )
    corrected = apply_corrections(scheme, [computed])[0]
    if corrected is None:
        raise EntryValidationError(
            record,
            f"not compatible with scheme {scheme} (MaterialsProject2020Compatibility rejected it: "
            "check run_type, hubbards and potcar_spec parameters)",
        )
    total = corrected.energy
    if not math.isfinite(total):
        raise EntryValidationError(record, f"corrected energy is {total}")
    elements = sorted(str(el) for el in comp.elements)
    return Entry(
        id=provenance.pop("id", None) or _entry_id(scheme, comp, energy, structure),
        scheme=scheme,
        formula=comp.formula.replace(" ", ""),
        reduced_formula=comp.reduced_formula,
        chemsys="-".join(elements),
        elements=elements,
        nsites=int(round(comp.num_atoms)),
        composition={str(el): float(amt) for el, amt in comp.items()},
        energy=total,
        uncorrected_energy=energy,
        correction=total - energy,
        energy_per_atom=total / comp.num_atoms,
        structure=structure.as_dict() if structure is not None else None,
        parameters=parameters,
        **provenance,
    )


def entry_from_structure(
    structure: Structure, energy: float, scheme: str, **provenance: Any
) -> Entry:
    """An Entry for a relaxed ``structure`` of total ``energy`` (eV, uncorrected)."""
    record = (
        provenance.pop("record", None)
        or provenance.get("source")
        or structure.composition.reduced_formula
    )
    return make_entry(
        structure.composition, energy, scheme, structure=structure, record=record, **provenance
    )


def entry_from_computed(
    computed: ComputedEntry, scheme: str, record: str = "entry", **provenance: Any
) -> Entry:
    """An Entry from a pymatgen ComputedEntry / ComputedStructureEntry.

    Its uncorrected energy is taken; the scheme decides corrections again, so an entry that
    arrives with MP corrections in a non-MP scheme does not keep them silently.
    """
    structure = getattr(computed, "structure", None)
    data = dict(provenance.pop("data", {}) or {})
    if computed.entry_id is not None:
        data.setdefault("source_entry_id", str(computed.entry_id))
    return make_entry(
        computed.composition,
        computed.uncorrected_energy,
        scheme,
        structure=structure,
        record=record,
        parameters=computed.parameters,
        data=data,
        **provenance,
    )
