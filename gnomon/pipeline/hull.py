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

from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Element
from pymatgen.entries.computed_entries import ComputedEntry

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


def phases_of(
    pd: PhaseDiagram | None,
    targets: Sequence[ComputedEntry],
    scheme: str,
    chemsys: str,
    docs: dict[str, dict[str, Any]],
) -> list[Phase]:
    """Phase records for ``targets`` (entries of exactly ``chemsys``) on ``pd``."""
    phases = []
    stable_ids = {e.entry_id for e in pd.stable_entries} if pd is not None else set()
    for entry in targets:
        doc = docs[entry.entry_id]
        base = dict(
            id=entry.entry_id,
            scheme=scheme,
            chemsys=chemsys,
            reduced_formula=doc["reduced_formula"],
            energy_per_atom=entry.energy_per_atom,
            stable_at_ingest=doc.get("_stable_at_ingest"),
        )
        if pd is None:
            missing = set(chemsys.split("-")) - {
                str(el) for d in docs.values() if len(d["elements"]) == 1 for el in d["elements"]
            }
            phases.append(Phase(**base, note=f"no hull: no elemental reference for {', '.join(sorted(missing)) or 'some element'}"))
            continue
        if entry.entry_id in stable_ids:
            e_hull = 0.0
            decomp = pd.get_phase_separation_energy(entry)
            products: list[str] = []
        else:
            products_map, e_hull = pd.get_decomp_and_e_above_hull(entry, allow_negative=True)
            # pymatgen's decomposition enthalpy (Bartel et al. 2020): equal to e_above_hull
            # unless a polymorph of this composition is on the hull
            decomp = pd.get_phase_separation_energy(entry)
            products = sorted(p.composition.reduced_formula for p in products_map)
        phases.append(
            Phase(
                **base,
                formation_energy_per_atom=pd.get_form_energy_per_atom(entry),
                e_above_hull=float(e_hull),
                decomposition_energy=float(decomp),
                is_stable=entry.entry_id in stable_ids,
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
            pd = phase_diagram(pool, chemsys)
            targets = [computed[d["id"]] for d in docs_by_sys.get(chemsys, [])]
            new_here = [e for e in targets if e.entry_id in fresh]
            if new_here:
                old_pool = [e for e in pool if e.entry_id not in fresh]
                old_pd = phase_diagram(old_pool, chemsys)
                for e in new_here:
                    if old_pd is None:
                        docs[e.entry_id]["_stable_at_ingest"] = None
                        continue
                    e_old = old_pd.get_e_above_hull(e, allow_negative=True)
                    stable = e_old is not None and e_old <= STABILITY_TOL
                    docs[e.entry_id]["_stable_at_ingest"] = stable
                    if stable:
                        report.stable_at_ingest.append(e.entry_id)
            for e in targets:
                if e.entry_id not in fresh and e.entry_id in previous:
                    docs[e.entry_id]["_stable_at_ingest"] = previous[e.entry_id].get("stable_at_ingest")
            phases.extend(phases_of(pd, targets, scheme, chemsys, docs))
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
