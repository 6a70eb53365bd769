"""The convex-hull engine: phases per energy scheme and chemical system.

Built on pymatgen's PhaseDiagram, so every number equals what pymatgen gives on the same
entries. What gnomon adds is bookkeeping that keeps it fast as the database grows: an entry
in chemical system S can only move the hulls of systems that contain S, so an ingest
recomputes those systems and nothing else. Each recomputed system's phases are written in the
same transaction as the entries that changed it, so a reader never sees entries without their
phases, and concurrent ingests cannot interleave between read and write.
"""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Element
from pymatgen.entries.computed_entries import ComputedEntry

from gnomon.pipeline.spacegroup import with_spacegroup
from gnomon.pipeline.thermo.array_hull import ArrayHull, SeparationLP, fractions
from gnomon.storage.chemsys import canonical_chemsys, chemsys_of, subsystems
from gnomon.storage.documents import Entry, Phase, utcnow
from gnomon.storage.repository import Repository

log = logging.getLogger(__name__)

STABILITY_TOL = 1e-8  # eV/atom; pymatgen's own tolerance scale for "on the hull"
REBUILD_BATCH = 500  # systems read, recomputed and written at a time by a rebuild


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration.

    Recomputing hulls allocates tens of thousands of small dicts and records and creates no
    reference cycles, so the collector finds nothing; but each full collection it triggers
    walks every object the process holds: in a process holding 10^5 entries one took 0.65 s
    of an ingest that otherwise took 1.0 s (bench/hull.py's data). Memory is still freed by
    reference counting.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class IngestReport:
    """What an ingest changed."""

    new_entry_ids: list[str] = field(default_factory=list)
    known_entry_ids: list[str] = field(default_factory=list)
    recomputed: dict[str, list[str]] = field(default_factory=dict)  # scheme -> chemsys
    phases_written: int = 0
    phases_unchanged: int = 0  # recomputed, equal to the stored phase, so not rewritten
    stable_at_ingest: list[str] = field(default_factory=list)


def supersets(systems: Iterable[str], of: Iterable[str]) -> set[str]:
    """The systems among ``systems`` that contain at least one of ``of`` (or equal it).

    Found by intersecting, per system of ``of``, the sets of systems holding each of its
    elements: one pass over ``systems`` rather than one subset test per pair.
    """
    inner = [s.split("-") for s in of]
    if not inner:
        return set()
    holding: dict[str, set[str]] = defaultdict(set)
    for t in systems:
        for el in t.split("-"):
            holding[el].add(t)
    found: set[str] = set()
    for elements in inner:
        found |= set.intersection(*(holding.get(el, set()) for el in elements))
    return found


def _computed(doc: dict[str, Any]) -> ComputedEntry:
    """The pymatgen entry of a stored entry document (its corrected energy).

    The hull engine reads raw documents, not :class:`Entry` records: validating every record of
    a chemical space would cost more than the hull itself.
    """
    return ComputedEntry(Composition(doc["composition"]), doc["energy"], entry_id=doc["id"])


def phase_diagram(entries: Sequence[ComputedEntry], chemsys: str) -> PhaseDiagram | None:
    """PhaseDiagram of ``chemsys``, or None when an element has no reference entry."""
    present = {
        str(el) for e in entries if e.composition.is_element for el in e.composition.elements
    }
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


def _pymatgen_e_above(hull: ArrayHull, doc: dict[str, Any]) -> float:
    """pymatgen's e_above_hull of the entry ``doc`` on ``hull``'s entries (negative below it).

    The fallback for the rare point that rounding puts outside every facet of the array hull;
    pymatgen reads the composition and energy from ``doc`` itself.
    """
    pd = PhaseDiagram(
        [_computed(d) for d in hull.docs], elements=[Element(e) for e in hull.elements]
    )
    return pd.get_e_above_hull(_computed(doc), allow_negative=True)


def phases_of(
    hull: ArrayHull | None,
    pool: Sequence[dict[str, Any]],
    rows: Sequence[int],
    scheme: str,
    chemsys: str,
    at_ingest: dict[str, bool | None],
    separations: Separations | None = None,
) -> list[Phase]:
    """Phase records for the entries ``pool[rows]`` (exactly ``chemsys``) on ``hull``.

    The numbers are pymatgen's: e_above_hull as ``get_e_above_hull``, decomposition energy as
    ``get_phase_separation_energy``, formation energy per atom as ``get_form_energy_per_atom``;
    computed for all rows at once on the hull's facets. Decomposition energies of stable
    formulas need a linear program each; with ``separations`` given they are queued there and
    filled in when it is flushed, else solved before returning.
    """
    own = separations is None
    separations = separations if separations is not None else Separations()
    if not rows:
        return []
    base = _phase_bases(pool, rows, scheme, chemsys, at_ingest)
    if hull is None:
        present = {d["elements"][0] for d in pool if len(d["elements"]) == 1}
        missing = ", ".join(sorted(set(chemsys.split("-")) - present)) or "some element"
        return [Phase(**b, note=f"no hull: no elemental reference for {missing}") for b in base]
    frac = hull.frac[list(rows)]
    epa = hull.epa[list(rows)]
    hull_e, facets, weights = hull.hull_energies(frac)
    form = (epa - frac @ hull.ref_epa).tolist()
    above = (epa - hull_e).tolist()
    epa_values = epa.tolist()
    stable_formulas = {
        pool[r]["reduced_formula"] for r in hull.stable if len(pool[r]["elements"]) > 1
    }
    reference_without: dict[str, int] = {}
    phases = []
    product_rows = hull.products_of(facets, weights)
    for k, (r, b) in enumerate(zip(rows, base, strict=True)):
        stable = r in hull.stable
        e_hull, products = _place(hull, pool, r, int(facets[k]), above[k], product_rows[k])
        formula = b["reduced_formula"]
        phase = Phase(
            **b,
            formation_energy_per_atom=form[k],
            e_above_hull=e_hull,
            decomposition_energy=e_hull,
            is_stable=stable,
            decomposes_to=products,
        )
        if formula in stable_formulas:
            if formula not in reference_without:
                reference_without[formula] = separations.queue(hull, r)
            separations.defer(phase, epa_values[k], reference_without[formula])
        phases.append(phase)
    if own:
        separations.flush()
    return phases


def _phase_bases(
    pool: Sequence[dict[str, Any]],
    rows: Sequence[int],
    scheme: str,
    chemsys: str,
    at_ingest: dict[str, bool | None],
) -> list[dict[str, Any]]:
    """What every phase of the system carries whatever the hull says."""
    now = utcnow()  # one timestamp per system, not a clock read per phase
    return [
        dict(
            id=pool[r]["id"],
            scheme=scheme,
            chemsys=chemsys,
            reduced_formula=pool[r]["reduced_formula"],
            energy_per_atom=pool[r]["energy_per_atom"],
            stable_at_ingest=at_ingest.get(pool[r]["id"]),
            updated_at=now,
        )
        for r in rows
    ]


def _place(
    hull: ArrayHull,
    pool: Sequence[dict[str, Any]],
    r: int,
    facet: int,
    above: float,
    products: Sequence[int],
) -> tuple[float, list[str]]:
    """e_above_hull and decomposition products of row ``r``: 0 on the hull; pymatgen's own
    answer where no facet lies below the point (the array hull's rare miss)."""
    if r in hull.stable:
        return 0.0, []
    if facet < 0:
        return _pymatgen_e_above(hull, pool[r]), []
    return above, sorted({pool[j]["reduced_formula"] for j in products})


class Separations:
    """Decomposition energies of stable phases, solved in batches of linear programs.

    A queued problem's phase gets ``energy_per_atom - minimum`` when the batch is flushed;
    batches flush themselves at ``batch`` problems so a rebuild's memory stays bounded.
    """

    def __init__(self, batch: int = 256):
        self.batch = batch
        self._lp = SeparationLP()
        self._deferred: list[tuple[Phase, float, int]] = []

    def queue(self, hull: ArrayHull, row: int) -> int:
        return self._lp.add(hull, row)

    def defer(self, phase: Phase, energy_per_atom: float, problem: int) -> None:
        self._deferred.append((phase, energy_per_atom, problem))

    def maybe_flush(self) -> None:
        if len(self._lp) >= self.batch:
            self.flush()

    def flush(self) -> None:
        minima = self._lp.solve()
        for phase, epa, problem in self._deferred:
            phase.decomposition_energy = float(epa - minima[problem])
        self._lp = SeparationLP()
        self._deferred = []


_VALUE_FIELDS = (
    "energy_per_atom",
    "formation_energy_per_atom",
    "e_above_hull",
    "decomposition_energy",
)
_EXACT_FIELDS = (
    "is_stable",
    "stable_at_ingest",
    "decomposes_to",
    "note",
    "reduced_formula",
    "chemsys",
)
SAME_VALUE_TOL = 1e-12  # eV/atom: a recomputed value this close to the stored one is the same


def _differs(phase: Phase, stored: dict[str, Any] | None) -> bool:
    """Whether ``phase`` says anything the stored phase document does not."""
    if stored is None:
        return True
    for name in _EXACT_FIELDS:
        if stored.get(name) != getattr(phase, name):
            return True
    for name in _VALUE_FIELDS:
        a, b = stored.get(name), getattr(phase, name)
        if (a is None) != (b is None) or (a is not None and abs(a - b) > SAME_VALUE_TOL):
            return True
    return False


class _Pools:
    """The entries each recomputed hull needs, read from the store once per ingest.

    The hull of T needs every entry of T itself but, of each proper subsystem S, only the
    vertices of S's hull: the hull of T restricted to S is the hull of S, so an entry above
    it is above T's hull too and can be neither a vertex, a decomposition product, nor part
    of the cheapest mixture of competing phases. A quinary's pool shrinks from every entry of
    its 31 subsystems to its own entries plus a few vertices each, which is what makes
    recomputing the large systems an ingest touches cheap. Vertices of systems this ingest
    does not recompute are the stored phases marked stable; of those it does, the vertices
    just computed (smaller systems are recomputed first).
    """

    def __init__(self, repo: Repository, scheme: str, fresh: set[str]):
        self.repo = repo
        self.scheme = scheme
        self.fresh = fresh
        self.own: dict[str, list[dict[str, Any]]] = {}  # every entry of exactly this system
        self.previous: dict[str, dict[str, Any]] = {}  # entry id -> its stored phase
        self.vertices_before: dict[str, list[dict[str, Any]]] = {}  # stored stable entries
        self.vertices: dict[str, list[dict[str, Any]]] = {}  # recomputed in this pass
        self.stale: set[str] = set()  # systems whose stored phases are incomplete
        self._hulls_before: dict[str, ArrayHull | None] = {}
        self._at_ingest: dict[str, dict[str, bool | None]] = {}

    def load(self, systems: Iterable[str]) -> set[str]:
        """Read the entries of ``systems`` and the stored vertices of their subsystems.

        Returns the subsystems whose stored phases do not cover their entries (written by
        something other than this engine, or interrupted before phases existed); their
        entries are read too, and the caller recomputes them.
        """
        systems = set(systems)
        self.load_own(systems)
        subs = (
            {x for t in systems for x in subsystems(t)} - set(self.own) - set(self.vertices_before)
        )
        stale = self._stale(subs)
        if stale:
            log.warning(
                "scheme %s: %d chemical systems have entries without phases; recomputing them",
                self.scheme,
                len(stale),
            )
            self.load_own(stale)
            subs -= stale
            self.stale |= stale
        stable_ids = [
            d["id"]
            for d in self.repo.find(
                "phases", {"scheme": self.scheme, "chemsys": sorted(subs), "is_stable": True}
            )
        ]
        for s in subs:
            self.vertices_before[s] = []
        for doc in self.repo.find("entries", {"id": stable_ids}) if stable_ids else ():
            self.vertices_before[doc["chemsys"]].append(doc)
        return stale

    def forget(self, systems: Iterable[str]) -> None:
        """Drop the entries and stored phases of systems already recomputed (a streamed
        rebuild); their new vertices stay."""
        for s in systems:
            for doc in self.own.pop(s, ()):
                self.previous.pop(doc["id"], None)
            self.vertices_before.pop(s, None)

    def load_own(self, systems: set[str]) -> None:
        todo = sorted(set(systems) - set(self.own))
        if not todo:
            return
        for s in todo:
            self.own[s] = []
        for doc in self.repo.find("entries", {"scheme": self.scheme, "chemsys": todo}):
            self.own[doc["chemsys"]].append(doc)
        for ph in self.repo.find("phases", {"scheme": self.scheme, "chemsys": todo}):
            self.previous[ph["id"]] = ph
        for s in todo:
            self.vertices_before[s] = [
                d for d in self.own[s] if self.previous.get(d["id"], {}).get("is_stable")
            ]

    def _stale(self, systems: set[str], chunk: int = 400) -> set[str]:
        """Systems among ``systems`` with fewer stored phases than entries."""
        stale: set[str] = set()
        ordered = sorted(systems)
        for start in range(0, len(ordered), chunk):
            part = ordered[start : start + chunk]
            where = {"scheme": self.scheme, "chemsys": part}
            if self.repo.count("entries", where) == self.repo.count("phases", where):
                continue
            for s in part:
                one = {"scheme": self.scheme, "chemsys": s}
                if self.repo.count("entries", one) != self.repo.count("phases", one):
                    stale.add(s)
        return stale

    def pool(self, chemsys: str, before_ingest: bool = False) -> list[dict[str, Any]]:
        """Entries of ``chemsys`` plus the hull vertices of its subsystems, smallest first.

        ``before_ingest`` gives the pool as it was before this ingest's new entries.
        """
        out: list[dict[str, Any]] = []
        for s in subsystems(chemsys):
            if s == chemsys:
                own = self.own.get(s, [])
                out.extend([d for d in own if d["id"] not in self.fresh] if before_ingest else own)
            elif before_ingest or s not in self.vertices:
                out.extend(self.vertices_before.get(s, []))
            else:
                out.extend(self.vertices[s])
        return out

    def hull_before(self, chemsys: str) -> ArrayHull | None:
        """The hull ``chemsys`` had before this ingest."""
        if chemsys not in self._hulls_before:
            self._hulls_before[chemsys] = _array_hull(
                chemsys.split("-"), self.pool(chemsys, before_ingest=True)
            )
        return self._hulls_before[chemsys]

    def stable_at_ingest(self, chemsys: str) -> dict[str, bool | None]:
        """For each new entry of ``chemsys``: whether it lay on or below the hull it found
        there (None when there was no hull: an element had no reference yet)."""
        if chemsys not in self._at_ingest:
            new = [d for d in self.own.get(chemsys, []) if d["id"] in self.fresh]
            old = self.hull_before(chemsys) if new else None
            if old is None:
                verdicts: dict[str, bool | None] = {d["id"]: None for d in new}
            else:
                frac = fractions(new, chemsys.split("-"))
                hull_e, facets, _ = old.hull_energies(frac)
                verdicts = {}
                for k, d in enumerate(new):
                    e_old = (
                        d["energy_per_atom"] - hull_e[k]
                        if facets[k] >= 0
                        else _pymatgen_e_above(old, d)
                    )
                    verdicts[d["id"]] = bool(e_old <= STABILITY_TOL)
            self._at_ingest[chemsys] = verdicts
        return self._at_ingest[chemsys]

    def moves_hull(self, chemsys: str) -> bool:
        """Whether a new entry of ``chemsys`` lies on or below the hull it found there (or
        found none), so the hulls of its supersets move too."""
        return any(stable is not False for stable in self.stable_at_ingest(chemsys).values())


class HullEngine:
    """Keeps the stored phases equal to pymatgen's hulls of the stored entries."""

    #: hulls kept per engine for queries, most recently used: a screen of a space of four of
    #: 40 elements asks for ~100,000 systems, whose phase diagrams kept held gigabytes
    pd_cache_size: int = 4096

    def __init__(self, repo: Repository):
        self.repo = repo
        self._pd_cache: OrderedDict[tuple[str, str], PhaseDiagram | None] = OrderedDict()

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
        known = self.repo.existing_ids("entries", [e.id for e in entries])
        entries = [e if e.id in known else with_spacegroup(e) for e in entries]
        with collector_paused(), self.repo.transaction():
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

    def rebuild(
        self, scheme: str | None = None, progress: Callable[[int, int], None] | None = None
    ) -> IngestReport:
        """Recompute every hull of ``scheme`` (or of all schemes) from the stored entries."""
        report = IngestReport()
        self._pd_cache.clear()

        def write(phases: list[Phase]) -> None:
            self.repo.upsert("phases", phases)
            report.phases_written += len(phases)

        with collector_paused(), self.repo.transaction():
            for s in [scheme] if scheme else self.repo.schemes():
                self._rebuild_scheme(s, report, progress, write)
        return report

    def _rebuild_scheme(
        self,
        scheme: str,
        report: IngestReport,
        progress: Callable[[int, int], None] | None,
        write: Callable[[list[Phase]], None],
    ) -> None:
        """Every system of ``scheme``, smallest first, streamed: entries are read and phases
        written ``REBUILD_BATCH`` systems at a time, and only the hull vertices of systems done
        stay in memory (what the pools of their supersets need), so a rebuild's memory is
        bounded by a batch, not by the database."""
        pools = _Pools(self.repo, scheme, set())
        order = sorted(
            self.repo.distinct("entries", "chemsys", {"scheme": scheme}),
            key=lambda t: (t.count("-"), t),
        )
        report.recomputed[scheme] = sorted(order)
        log.info("scheme %s: rebuilding %d chemical systems", scheme, len(order))
        separations = Separations()
        for start in range(0, len(order), REBUILD_BATCH):
            batch = order[start : start + REBUILD_BATCH]
            pools.load_own(set(batch))
            phases: list[Phase] = []
            for i, chemsys in enumerate(batch, start=start):
                phases.extend(self._system_phases(pools, chemsys, scheme, report, separations))
                separations.maybe_flush()
                if progress is not None:
                    progress(i + 1, len(order))
            separations.flush()  # fills the decomposition energies before the phases are written
            write(phases)
            pools.forget(batch)

    def _recompute(
        self,
        scheme: str,
        changed: set[str],
        fresh: set[str],
        report: IngestReport,
        progress: Callable[[int, int], None] | None,
    ) -> list[Phase]:
        pools = _Pools(self.repo, scheme, fresh)
        stored = set(self.repo.distinct("entries", "chemsys", {"scheme": scheme}))
        # The hull of T restricted to a subsystem S is the hull of S, so new entries that
        # all sit above the old hull of their own system S leave every larger hull as it
        # was (and can never enter a decomposition there); only systems holding a new
        # entry on or below its old hull pass the change on to their supersets.
        pools.load(changed)
        moving = {s for s in changed if pools.moves_hull(s)}
        affected = set(changed) | supersets(stored, moving)
        affected |= pools.load(affected)
        affected |= pools.stale
        order = sorted(affected, key=lambda t: (t.count("-"), t))
        report.recomputed[scheme] = sorted(affected)
        phases: list[Phase] = []
        separations = Separations()
        log.info("scheme %s: recomputing %d chemical systems", scheme, len(order))
        # Smaller systems first: each system's new vertices feed the pools of its supersets.
        for i, chemsys in enumerate(order):
            phases.extend(self._system_phases(pools, chemsys, scheme, report, separations))
            separations.maybe_flush()
            if progress is not None:
                progress(i + 1, len(order))
        separations.flush()
        # A superset recomputed because one face of it moved keeps most of its phases as they
        # were; rewriting those would cost more than computing them.
        kept = [p for p in phases if _differs(p, pools.previous.get(p.id))]
        report.phases_unchanged += len(phases) - len(kept)
        return kept

    @staticmethod
    def _system_phases(
        pools: _Pools,
        chemsys: str,
        scheme: str,
        report: IngestReport,
        separations: Separations,
    ) -> list[Phase]:
        """The phases of one system on its hull, built from its pool (its entries and its
        subsystems' vertices); records the system's vertices for its supersets."""
        pool = pools.pool(chemsys)
        rows = [r for r, d in enumerate(pool) if d["chemsys"] == chemsys]
        verdicts = pools.stable_at_ingest(chemsys)
        report.stable_at_ingest.extend(rid for rid, stable in verdicts.items() if stable)
        at_ingest: dict[str, bool | None] = dict(verdicts)
        for r in rows:
            rid = pool[r]["id"]
            if rid not in pools.fresh and rid in pools.previous:
                at_ingest[rid] = pools.previous[rid].get("stable_at_ingest")
        hull = _array_hull(chemsys.split("-"), pool)
        pools.vertices[chemsys] = [pool[r] for r in rows if hull is not None and r in hull.stable]
        return phases_of(hull, pool, rows, scheme, chemsys, at_ingest, separations)

    # -- queries --------------------------------------------------------------------------
    def phase_diagram(self, scheme: str, chemsys: str | Iterable[str]) -> PhaseDiagram | None:
        """The hull of ``chemsys`` in ``scheme`` from stored entries (cached per engine)."""
        chemsys = canonical_chemsys(chemsys) if isinstance(chemsys, str) else chemsys_of(chemsys)
        key = (scheme, chemsys)
        if key in self._pd_cache:
            self._pd_cache.move_to_end(key)
            return self._pd_cache[key]
        docs = list(self.repo.find("entries", {"scheme": scheme, "chemsys": subsystems(chemsys)}))
        pd = self._pd_cache[key] = phase_diagram([_computed(d) for d in docs], chemsys)
        while len(self._pd_cache) > self.pd_cache_size:
            self._pd_cache.popitem(last=False)
        return pd

    def e_above_hull(
        self, scheme: str, composition: Composition | str, energy_per_atom: float
    ) -> float | None:
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
