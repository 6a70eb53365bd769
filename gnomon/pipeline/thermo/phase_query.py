"""Asking the database which phases were found: the query behind `gnomon phases`, the Python
API and the HTTP service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymatgen.core import Element

from gnomon.pipeline.spacegroup import stored_spacegroup
from gnomon.storage.chemsys import chemsys_of, subsystems
from gnomon.storage.documents import Entry, Phase
from gnomon.storage.repository import Repository

ROW_FIELDS = (
    "id",
    "formula",
    "reduced_formula",
    "cell_formula",
    "chemsys",
    "scheme",
    "spacegroup",
    "energy_per_atom",
    "uncorrected_energy_per_atom",
    "formation_energy_per_atom",
    "e_above_hull",
    "decomposition_energy",
    "is_stable",
    "stable_at_ingest",
    "decomposes_to",
    "nsites",
    "source",
    "candidate_id",
)


def normalise_chemsys(chemsys: str) -> str:
    """A user's spelling of a system (``O,Li``, ``Li-O-Li``) as its one name, or a clear error
    naming the symbol that is not an element."""
    elements = [e.strip() for e in chemsys.replace(",", "-").split("-") if e.strip()]
    for el in elements:
        if not Element.is_valid_symbol(el):
            raise ValueError(f"unknown element {el!r} in chemical system {chemsys!r}")
    return chemsys_of(elements)


@dataclass
class PhaseQuery:
    """Which phases to return.

    ``chemsys`` selects a whole chemical space (every subsystem, as a hull needs);
    ``elements`` selects phases that contain all of the given elements.
    """

    chemsys: str | None = None
    elements: list[str] | None = None
    scheme: str | None = None
    stable: bool = False
    max_e_above_hull: float | None = None
    limit: int | None = None

    def run(self, repo: Repository) -> list[dict[str, Any]]:
        filters: dict[str, Any] = {}
        if self.scheme:
            filters["scheme"] = self.scheme
        if self.stable:
            filters["is_stable"] = True
        systems: list[str] | None = None
        if self.chemsys:
            systems = subsystems(normalise_chemsys(self.chemsys))
        if self.elements:
            wanted = set(normalise_chemsys("-".join(self.elements)).split("-"))
            known = repo.distinct(
                "phases", "chemsys", {"scheme": self.scheme} if self.scheme else None
            )
            with_elements = [c for c in known if wanted <= set(c.split("-"))]
            systems = (
                with_elements if systems is None else sorted(set(systems) & set(with_elements))
            )
        if systems is not None:
            filters["chemsys"] = systems
        phases: list[Phase] = list(repo.query(Phase, filters))
        if self.max_e_above_hull is not None:
            phases = [
                p
                for p in phases
                if p.e_above_hull is not None and p.e_above_hull <= self.max_e_above_hull + 1e-12
            ]
        phases.sort(
            key=lambda p: (
                p.scheme,
                p.chemsys.count("-"),
                p.chemsys,
                p.e_above_hull if p.e_above_hull is not None else float("inf"),
                p.reduced_formula,
            )
        )
        if self.limit is not None:
            phases = phases[: self.limit]
        entries = {e.id: e for e in repo.query(Entry, {"id": [p.id for p in phases]})}
        return [phase_row(p, entries.get(p.id)) for p in phases]


def phase_row(phase: Phase, entry: Entry | None) -> dict[str, Any]:
    """A phase as people read it: ``formula`` is pymatgen's reduced formula (``Li3MnO3``,
    ``Li``), ``cell_formula`` the computed cell's (``Li6Mn2O6``; None without its entry);
    ``spacegroup`` tells polymorphs apart (None for an entry without a structure)."""
    row = {
        "id": phase.id,
        "formula": phase.reduced_formula,
        "reduced_formula": phase.reduced_formula,
        "cell_formula": entry.formula if entry else None,
        "chemsys": phase.chemsys,
        "scheme": phase.scheme,
        "spacegroup": stored_spacegroup(entry.data, entry.structure) if entry else None,
        "energy_per_atom": phase.energy_per_atom,
        "uncorrected_energy_per_atom": (
            entry.uncorrected_energy / sum(entry.composition.values()) if entry else None
        ),
        "formation_energy_per_atom": phase.formation_energy_per_atom,
        "e_above_hull": phase.e_above_hull,
        "decomposition_energy": phase.decomposition_energy,
        "is_stable": phase.is_stable,
        "stable_at_ingest": phase.stable_at_ingest,
        "decomposes_to": phase.decomposes_to,
        "nsites": entry.nsites if entry else None,
        "source": entry.source if entry else None,
        "candidate_id": entry.candidate_id if entry else None,
    }
    if entry is not None and entry.structure is not None:
        row["_structure"] = entry.structure
    return row
