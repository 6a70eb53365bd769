"""``gnomon db check``'s hull half: every stored e_above_hull against a hull built afresh.

The hull engine updates phases incrementally (only the systems an ingest can move), on its own
array geometry; a bug there, an interrupted write by an old version, or a hand edit would leave
phases that no longer match their entries, and every later query would trust them. The audit
rebuilds each stored system's hull with pymatgen's PhaseDiagram from the stored entries of the
same scheme (the system and all its subsystems), as the engine promises to equal, and reports
each phase whose stored value differs by more than a tolerance. It only reads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from gnomon.pipeline.thermo.hull import phase_diagram
from gnomon.storage.chemsys import subsystems
from gnomon.storage.repository import Repository

TOLERANCE = 1e-6
"""eV/atom: far above the engine's round-off against pymatgen (~1e-12), far below any energy
difference that matters."""


def hull_problems(repo: Repository, tolerance: float = TOLERANCE) -> Iterator[str]:
    """One line per phase whose e_above_hull is not that of a fresh hull of its scheme and
    chemical system."""
    for scheme in repo.schemes():
        entries: dict[str, dict[str, Any]] = {}
        by_system: dict[str, list[str]] = defaultdict(list)
        for doc in repo.find("entries", {"scheme": scheme}):
            entries[doc["id"]] = doc
            by_system[doc["chemsys"]].append(doc["id"])
        phases: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for phase in repo.find("phases", {"scheme": scheme}):
            phases[phase["chemsys"]].append(phase)
        for chemsys in sorted(phases):
            yield from _system_problems(scheme, chemsys, phases[chemsys], entries, by_system,
                                        tolerance)


def _computed(doc: dict[str, Any]) -> ComputedEntry:
    return ComputedEntry(Composition(doc["composition"]), doc["energy"], entry_id=doc["id"])


def _system_problems(scheme: str, chemsys: str, phases: list[dict[str, Any]],
                     entries: dict[str, dict[str, Any]], by_system: dict[str, list[str]],
                     tolerance: float) -> Iterator[str]:
    pool = {i: _computed(entries[i]) for s in subsystems(chemsys) for i in by_system.get(s, ())}
    pd = phase_diagram(list(pool.values()), chemsys)
    for phase in phases:
        where = f"phases {phase['id']} ({phase.get('reduced_formula')}, {scheme}, {chemsys})"
        stored = phase.get("e_above_hull")
        entry = pool.get(phase["id"])
        if entry is None:
            continue  # its entry is missing: the record check reports the orphan
        if pd is None:
            if stored is not None:
                yield (f"{where}: e_above_hull {stored:.6f} eV/atom stored, but no hull can "
                       "be built (an element has no reference entry)")
            continue
        fresh = pd.get_e_above_hull(entry, allow_negative=True)
        if stored is None:
            yield f"{where}: no e_above_hull stored; a fresh hull gives {fresh:.6f} eV/atom"
        elif abs(stored - fresh) > tolerance:
            yield (f"{where}: e_above_hull {stored:.6f} eV/atom stored, a fresh hull gives "
                   f"{fresh:.6f} (off by {abs(stored - fresh):.2e})")
