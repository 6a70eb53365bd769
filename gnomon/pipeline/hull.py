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

from gnomon.pipeline.hull_geometry import HullGeometry
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


def _e_above(pd: PhaseDiagram | None, entries: Sequence[ComputedEntry]) -> list[float | None]:
    """Energy above (negative: below) ``pd``'s hull of entries that need not be in it."""
    if pd is None:
        return [None] * len(entries)
    geometry = HullGeometry(pd)
    hull_e, facets, _ = geometry.hull_energies(geometry.coords([e.composition for e in entries]))
    return [
        float(e.energy_per_atom - h) if f >= 0 else pd.get_e_above_hull(e, allow_negative=True)
        for e, h, f in zip(entries, hull_e, facets, strict=True)
    ]


def _hull_without(pool: Sequence[ComputedEntry], comp: Composition) -> float:
    """Hull energy per atom at ``comp`` from every entry of its subspace but its own
    composition: the reference of pymatgen's decomposition (phase separation) energy.

    The lower hull at a point is the cheapest mixture of competing phases with that
    composition, a linear program; HiGHS solves it exactly, where pymatgen runs SLSQP.
    """
    from scipy.optimize import linprog

    elements = sorted(comp.elements)
    frac = comp.fractional_composition

    def same_composition(other: Composition) -> bool:  # pymatgen's test, not almost_equals' 10%
        return len(other) == len(frac) and all(
            abs(v - other.get_atomic_fraction(el)) <= Composition.amount_tolerance for el, v in frac.items()
        )

    competing = [
        e for e in pool if set(e.composition.elements) <= set(elements) and not same_composition(e.composition)
    ]
    x = np.array([[e.composition.get_atomic_fraction(el) for el in elements] for e in competing]).T
    energies = np.array([e.energy_per_atom for e in competing])
    target = np.array([frac.get_atomic_fraction(el) for el in elements])
    result = linprog(energies, A_eq=x, b_eq=target, bounds=(0, None), method="highs")
    if not result.success:
        raise RuntimeError(f"no decomposition of {comp.reduced_formula} into competing phases: {result.message}")
    return float(result.fun)


def _lowest_per_composition(pool: Sequence[ComputedEntry], docs: dict[str, dict[str, Any]]) -> list[ComputedEntry]:
    """The lowest entry of each reduced composition, first one on ties, as pymatgen keeps.

    Only these can be on the hull, and building the PhaseDiagram from them alone spares
    pymatgen sorting every polymorph by composition.
    """
    best: dict[str, ComputedEntry] = {}
    for e in pool:
        key = docs[e.entry_id]["reduced_formula"]
        if key not in best or e.energy_per_atom < best[key].energy_per_atom:
            best[key] = e
    return list(best.values())


def phases_of(
    pd: PhaseDiagram | None,
    pool: Sequence[ComputedEntry],
    targets: Sequence[ComputedEntry],
    scheme: str,
    chemsys: str,
    docs: dict[str, dict[str, Any]],
) -> list[Phase]:
    """Phase records for ``targets`` (entries of exactly ``chemsys``) on ``pd``.

    Numbers are pymatgen's: e_above_hull as ``get_e_above_hull``, decomposition energy as
    ``get_phase_separation_energy``, formation energy per atom as ``get_form_energy_per_atom``;
    computed for all targets at once on the hull's facets.
    """
    if not targets:
        return []
    base = [
        dict(
            id=e.entry_id,
            scheme=scheme,
            chemsys=chemsys,
            reduced_formula=docs[e.entry_id]["reduced_formula"],
            energy_per_atom=e.energy_per_atom,
            stable_at_ingest=docs[e.entry_id].get("_stable_at_ingest"),
        )
        for e in targets
    ]
    if pd is None:
        present = {el for d in docs.values() if len(d["elements"]) == 1 for el in d["elements"]}
        missing = ", ".join(sorted(set(chemsys.split("-")) - present)) or "some element"
        return [Phase(**b, note=f"no hull: no elemental reference for {missing}") for b in base]

    geometry = HullGeometry(pd)
    comps = [e.composition for e in targets]
    hull_e, facets, weights = geometry.hull_energies(geometry.coords(comps))
    epa = np.array([e.energy_per_atom for e in targets])
    refs = {el: pd.el_refs[el].energy_per_atom for el in pd.elements}
    form = epa - np.array([sum(c.get_atomic_fraction(el) * refs[el] for el in pd.elements) for c in comps])
    stable_ids = {e.entry_id for e in pd.stable_entries}
    stable_comps = {
        e.composition.reduced_composition for e in pd.stable_entries if not e.composition.is_element
    }
    reference_without: dict[Composition, float] = {}
    phases = []
    for i, (entry, b) in enumerate(zip(targets, base, strict=True)):
        if facets[i] < 0:  # rounding put it outside every facet: ask pymatgen directly
            products_map, e_hull = pd.get_decomp_and_e_above_hull(entry, allow_negative=True)
            products = sorted({p.composition.reduced_formula for p in products_map})
        else:
            e_hull = float(epa[i] - hull_e[i])
            products = sorted({
                pd.qhull_entries[j].composition.reduced_formula
                for j in geometry.decomposition(int(facets[i]), weights[i])
            })
        stable = entry.entry_id in stable_ids
        reduced = entry.composition.reduced_composition
        if stable:
            e_hull, products = 0.0, []
        if reduced in stable_comps:
            if reduced not in reference_without:
                reference_without[reduced] = _hull_without(pool, entry.composition)
            decomp = float(epa[i] - reference_without[reduced])
        else:
            decomp = e_hull
        phases.append(
            Phase(
                **b,
                formation_energy_per_atom=float(form[i]),
                e_above_hull=float(e_hull),
                decomposition_energy=decomp,
                is_stable=stable,
                decomposes_to=products,
            )
        )
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
        if everything:
            affected = sorted(stored)
        else:
            affected = sorted(t for t in stored if any(_contains(t, s) for s in changed))
        report.recomputed[scheme] = affected
        needed = sorted({sub for t in affected for sub in subsystems(t)})
        docs_by_sys: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in self.repo.find("entries", {"scheme": scheme, "chemsys": needed}):
            docs_by_sys[doc["chemsys"]].append(doc)
        computed: dict[str, ComputedEntry] = {
            d["id"]: _computed(d) for ds in docs_by_sys.values() for d in ds
        }
        previous: dict[str, dict[str, Any]] = {}
        if not everything:
            previous = {
                d["id"]: d for d in self.repo.find("phases", {"id": [d["id"] for ds in docs_by_sys.values() for d in ds]})
            }
        phases: list[Phase] = []
        log.info("scheme %s: recomputing %d chemical systems", scheme, len(affected))
        for i, chemsys in enumerate(affected):
            subs = subsystems(chemsys)
            pool = [computed[d["id"]] for s in subs for d in docs_by_sys.get(s, [])]
            docs = {d["id"]: d for s in subs for d in docs_by_sys.get(s, [])}
            pd = phase_diagram(_lowest_per_composition(pool, docs), chemsys)
            targets = [computed[d["id"]] for d in docs_by_sys.get(chemsys, [])]
            new_here = [e for e in targets if e.entry_id in fresh]
            if new_here:
                old_pool = [e for e in pool if e.entry_id not in fresh]
                old_pd = phase_diagram(_lowest_per_composition(old_pool, docs), chemsys)
                for e, e_old in zip(new_here, _e_above(old_pd, new_here), strict=True):
                    stable = None if e_old is None else bool(e_old <= STABILITY_TOL)
                    docs[e.entry_id]["_stable_at_ingest"] = stable
                    if stable:
                        report.stable_at_ingest.append(e.entry_id)
            for e in targets:
                if e.entry_id not in fresh and e.entry_id in previous:
                    docs[e.entry_id]["_stable_at_ingest"] = previous[e.entry_id].get("stable_at_ingest")
            phases.extend(phases_of(pd, pool, targets, scheme, chemsys, docs))
            if progress is not None:
                progress(i + 1, len(affected))
        return phases

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
