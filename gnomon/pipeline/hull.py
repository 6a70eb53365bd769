"""The convex-hull engine: phases per energy scheme and chemical system.

Built on pymatgen's PhaseDiagram, so every number equals what pymatgen gives on the same
entries. What gnomon adds is bookkeeping that keeps it fast as the database grows: an entry
in chemical system S can only move the hulls of systems that contain S, so an ingest
recomputes those systems and nothing else. Each recomputed system's phases are written in the
same transaction as the entries that changed it, so a reader never sees entries without their
phases, and concurrent ingests cannot interleave between read and write.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Element
from pymatgen.entries.computed_entries import ComputedEntry

from gnomon.pipeline.array_hull import ArrayHull, fractions
from gnomon.storage.documents import Entry, Phase
from gnomon.storage.repository import Repository

log = logging.getLogger(__name__)

STABILITY_TOL = 1e-8  # eV/atom; pymatgen's own tolerance scale for "on the hull"


@dataclass
class IngestReport:
    """What an ingest changed."""

    new_entry_ids: list[str] = field(default_factory=list)
    known_entry_ids: list[str] = field(default_factory=list)
    recomputed: dict[str, list[str]] = field(default_factory=dict)  # scheme -> chemsys
    phases_written: int = 0
    stable_at_ingest: list[str] = field(default_factory=list)


def subsystems(chemsys: str) -> list[str]:
    """Every chemical system inside ``chemsys``, itself included."""
    elements = chemsys.split("-")
    return [
        "-".join(sorted(combo))
        for n in range(1, len(elements) + 1)
        for combo in combinations(elements, n)
    ]


def _contains(outer: str, inner: str) -> bool:
    return set(inner.split("-")) <= set(outer.split("-"))


def _computed(doc: dict[str, Any]) -> ComputedEntry:
    return ComputedEntry(Composition(doc["composition"]), doc["energy"], entry_id=doc["id"])


def phase_diagram(entries: Sequence[ComputedEntry], chemsys: str) -> PhaseDiagram | None:
    """PhaseDiagram of ``chemsys``, or None when an element has no reference entry."""
    present = {str(el) for e in entries if e.composition.is_element for el in e.composition.elements}
    missing = set(chemsys.split("-")) - present
    if missing:
        return None
    return PhaseDiagram(entries, elements=[Element(el) for el in chemsys.split("-")])


def _array_hull(elements: list[str], pool: list[dict[str, Any]]) -> ArrayHull | None:
    """The hull over ``pool``, or None when an element has no reference entry."""
    present = {d["elements"][0] for d in pool if len(d["elements"]) == 1}
    if not set(elements) <= present:
        return None
    return ArrayHull(elements, pool)


def _pymatgen_e_above(hull: ArrayHull, frac: np.ndarray, doc: dict[str, Any]) -> float:
    """pymatgen's answer, for the rare point rounding puts outside every facet."""
    pd = PhaseDiagram([_computed(d) for d in hull.docs], elements=[Element(e) for e in hull.elements])
    return pd.get_e_above_hull(_computed(doc), allow_negative=True)


def phases_of(
    hull: ArrayHull | None,
    pool: Sequence[dict[str, Any]],
    rows: Sequence[int],
    scheme: str,
    chemsys: str,
    at_ingest: dict[str, bool | None],
) -> list[Phase]:
    """Phase records for the entries ``pool[rows]`` (exactly ``chemsys``) on ``hull``.

    The numbers are pymatgen's: e_above_hull as ``get_e_above_hull``, decomposition energy as
    ``get_phase_separation_energy``, formation energy per atom as ``get_form_energy_per_atom``;
    computed for all rows at once on the hull's facets.
    """
    if not rows:
        return []
    base = [
        dict(id=pool[r]["id"], scheme=scheme, chemsys=chemsys, reduced_formula=pool[r]["reduced_formula"],
             energy_per_atom=pool[r]["energy_per_atom"], stable_at_ingest=at_ingest.get(pool[r]["id"]))
        for r in rows
    ]
    if hull is None:
        present = {d["elements"][0] for d in pool if len(d["elements"]) == 1}
        missing = ", ".join(sorted(set(chemsys.split("-")) - present)) or "some element"
        return [Phase(**b, note=f"no hull: no elemental reference for {missing}") for b in base]
    frac = hull.frac[list(rows)]
    epa = hull.epa[list(rows)]
    hull_e, facets, weights = hull.hull_energies(frac)
    form = epa - frac @ hull.ref_epa
    stable_formulas = {pool[r]["reduced_formula"] for r in hull.stable if len(pool[r]["elements"]) > 1}
    reference_without: dict[str, float] = {}
    phases = []
    for k, (r, b) in enumerate(zip(rows, base, strict=True)):
        stable = r in hull.stable
        if stable:
            e_hull, products = 0.0, []
        elif facets[k] < 0:
            e_hull, products = _pymatgen_e_above(hull, frac[k], pool[r]), []
        else:
            e_hull = float(epa[k] - hull_e[k])
            products = sorted({pool[j]["reduced_formula"] for j in hull.products(int(facets[k]), weights[k])})
        formula = pool[r]["reduced_formula"]
        if formula in stable_formulas:
            if formula not in reference_without:
                reference_without[formula] = hull.hull_without(r)
            decomp = float(epa[k] - reference_without[formula])
        else:
            decomp = e_hull
        phases.append(Phase(**b, formation_energy_per_atom=float(form[k]), e_above_hull=float(e_hull),
                            decomposition_energy=decomp, is_stable=stable, decomposes_to=products))
    return phases


class HullEngine:
    """Keeps the stored phases equal to pymatgen's hulls of the stored entries."""

    def __init__(self, repo: Repository):
        self.repo = repo
        self._pd_cache: dict[tuple[str, str], PhaseDiagram | None] = {}

    # -- ingest ---------------------------------------------------------------------------
    def ingest(
        self,
        entries: Sequence[Entry],
        progress: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Store new entries and recompute every hull they can change; all or nothing.

        Entries already stored (same id) are left as they are: an ingest can be repeated.
        """
        report = IngestReport()
        self._pd_cache.clear()
        with self.repo.transaction():
            new_ids = set(self.repo.insert_new("entries", list(entries)))
            report.new_entry_ids = [e.id for e in entries if e.id in new_ids]
            report.known_entry_ids = [e.id for e in entries if e.id not in new_ids]
            by_scheme: dict[str, set[str]] = defaultdict(set)
            for e in entries:
                if e.id in new_ids:
                    by_scheme[e.scheme].add(e.chemsys)
            for scheme, changed in by_scheme.items():
                fresh = {e.id for e in entries if e.id in new_ids and e.scheme == scheme}
                phases = self._recompute(scheme, changed, fresh, report, progress)
                self.repo.upsert("phases", phases)
                report.phases_written += len(phases)
        return report

    def rebuild(self, scheme: str | None = None, progress: Callable[[int, int], None] | None = None) -> IngestReport:
        """Recompute every hull of ``scheme`` (or of all schemes) from the stored entries."""
        report = IngestReport()
        self._pd_cache.clear()
        with self.repo.transaction():
            for s in [scheme] if scheme else self.repo.schemes():
                systems = set(self.repo.distinct("entries", "chemsys", {"scheme": s}))
                phases = self._recompute(s, systems, set(), report, progress, everything=True)
                self.repo.upsert("phases", phases)
                report.phases_written += len(phases)
        return report

    def _recompute(
        self,
        scheme: str,
        changed: set[str],
        fresh: set[str],
        report: IngestReport,
        progress: Callable[[int, int], None] | None,
        everything: bool = False,
    ) -> list[Phase]:
        stored = self.repo.distinct("entries", "chemsys", {"scheme": scheme})
        docs_by_sys: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if everything:
            affected = sorted(stored)
        else:
            # The hull of T restricted to a subsystem S is the hull of S, so new entries that
            # all sit above the old hull of their own system S leave every larger hull as it
            # was (and can never enter a decomposition there); only systems holding a new
            # entry on or below its old hull pass the change on to their supersets.
            for doc in self.repo.find("entries", {"scheme": scheme, "chemsys": sorted({x for s in changed for x in subsystems(s)})}):
                docs_by_sys[doc["chemsys"]].append(doc)
            moving = {s for s in changed if self._moves_hull(s, docs_by_sys, fresh)}
            affected = sorted(t for t in stored if t in changed or any(_contains(t, s) for s in moving))
        report.recomputed[scheme] = affected
        needed = sorted({sub for t in affected for sub in subsystems(t)} - set(docs_by_sys))
        for doc in self.repo.find("entries", {"scheme": scheme, "chemsys": needed}):
            docs_by_sys[doc["chemsys"]].append(doc)
        previous: dict[str, dict[str, Any]] = {}
        if not everything:
            previous = {
                d["id"]: d for d in self.repo.find("phases", {"id": [d["id"] for ds in docs_by_sys.values() for d in ds]})
            }
        phases: list[Phase] = []
        log.info("scheme %s: recomputing %d chemical systems", scheme, len(affected))
        for i, chemsys in enumerate(affected):
            elements = chemsys.split("-")
            pool = [d for s in subsystems(chemsys) for d in docs_by_sys.get(s, [])]
            rows = [r for r, d in enumerate(pool) if d["chemsys"] == chemsys]
            at_ingest: dict[str, bool | None] = {}
            new_rows = [r for r in rows if pool[r]["id"] in fresh]
            if new_rows:
                old = _array_hull(elements, [d for d in pool if d["id"] not in fresh])
                if old is None:
                    at_ingest.update({pool[r]["id"]: None for r in new_rows})
                else:
                    frac = old_fracs = fractions([pool[r] for r in new_rows], elements)
                    hull_e, facets, _ = old.hull_energies(old_fracs)
                    for k, r in enumerate(new_rows):
                        epa = pool[r]["energy_per_atom"]
                        e_old = epa - hull_e[k] if facets[k] >= 0 else _pymatgen_e_above(old, frac[k], pool[r])
                        stable = bool(e_old <= STABILITY_TOL)
                        at_ingest[pool[r]["id"]] = stable
                        if stable:
                            report.stable_at_ingest.append(pool[r]["id"])
            for r in rows:
                rid = pool[r]["id"]
                if rid not in fresh and rid in previous:
                    at_ingest[rid] = previous[rid].get("stable_at_ingest")
            phases.extend(phases_of(_array_hull(elements, pool), pool, rows, scheme, chemsys, at_ingest))
            if progress is not None:
                progress(i + 1, len(affected))
        return phases

    @staticmethod
    def _moves_hull(chemsys: str, docs_by_sys: dict[str, list[dict[str, Any]]], fresh: set[str]) -> bool:
        """Whether a new entry of ``chemsys`` lies on or below the hull it found there."""
        pool = [d for s in subsystems(chemsys) for d in docs_by_sys.get(s, [])]
        new = [d for d in docs_by_sys.get(chemsys, []) if d["id"] in fresh]
        if not new:
            return False
        old = _array_hull(chemsys.split("-"), [d for d in pool if d["id"] not in fresh])
        if old is None:
            return True
        hull_e, facets, _ = old.hull_energies(fractions(new, chemsys.split("-")))
        epa = np.array([d["energy_per_atom"] for d in new])
        return bool(np.any((facets < 0) | (epa - hull_e <= STABILITY_TOL)))

    # -- queries --------------------------------------------------------------------------
    def phase_diagram(self, scheme: str, chemsys: str | Iterable[str]) -> PhaseDiagram | None:
        """The hull of ``chemsys`` in ``scheme`` from stored entries (cached per engine)."""
        chemsys = chemsys if isinstance(chemsys, str) else "-".join(sorted(set(chemsys)))
        chemsys = "-".join(sorted(chemsys.split("-")))
        key = (scheme, chemsys)
        if key not in self._pd_cache:
            docs = list(self.repo.find("entries", {"scheme": scheme, "chemsys": subsystems(chemsys)}))
            self._pd_cache[key] = phase_diagram([_computed(d) for d in docs], chemsys)
        return self._pd_cache[key]

    def e_above_hull(self, scheme: str, composition: Composition | str, energy_per_atom: float) -> float | None:
        """Energy above the stored hull of a hypothetical entry; negative below it.

        None when the hull of its chemical system cannot be built (an element lacks a
        reference entry in this scheme).
        """
        comp = Composition(composition)
        pd = self.phase_diagram(scheme, comp.chemical_system)
        if pd is None:
            return None
        return float(energy_per_atom - pd.get_hull_energy_per_atom(comp))

    def invalidate(self) -> None:
        """Forget cached hulls (after entries were added by someone else)."""
        self._pd_cache.clear()
