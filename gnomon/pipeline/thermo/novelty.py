"""Is a stable phase new? Structure matching against known phases, disorder-aware, plus a
continuous distance to the nearest one.

A phase a campaign finds on the hull is only a discovery if nobody knew it. Two checks:

- **Matching** with pymatgen's :class:`StructureMatcher` against the phases gnomon knows of the
  same composition: species-exact (a ``known`` phase, possibly strained or in another cell),
  then disorder-aware against known *disordered* phases with
  :class:`OrderDisorderElementComparator`, which lets a site of Li match a site of
  (Li0.5Mn0.5). An ordered phase that only matches that way is an ``ordering-of-disordered``
  known phase: the trap of TaCr2O6, reported as new, an ordering of a rutile phase known since
  1972 (its novelty claim came from a matcher that ignored disorder).
- **Average minimum distance** (AMD; Widdowson et al., MATCH Commun. Math. Comput. Chem. 87, 529
  (2022), the ``average-minimum-distance`` package) to the nearest known compound of the same
  chemical space: a continuous, cell-independent measure of how far the geometry is from
  anything known, so a "new" phase 0.02 Å from a known one reads differently from one 0.5 Å
  away. AMD sees geometry only (not species), so a disordered phase compares by its sites.
  Both crystals are compared at the known phase's density (volume per site): a uniformly
  strained copy is at distance 0, and the distance is in Å of that phase.

What counts as known (:func:`stored_references`): every other stored phase of the space, i.e.
the published phases of ``gnomon/data/known`` a campaign relaxed before its first round,
imported entries, and phases found earlier (by any campaign; never the phase's own lineage,
such as the ML-relaxed entry its DFT entry started from); and any structures the caller adds
(:func:`references_from_files`: CIFs whose partial occupancies are kept, the usual source of
disordered known phases, which cannot be stored as entries).

Cost: matching runs only against phases of the same reduced composition, AMD only against the
compounds of the phase's own chemical space (fingerprints computed once per structure), so a
report of tens of phases takes seconds.

Example::

    checker = NoveltyChecker(stored_references(repo, ["Li-Mn-O"]))
    result = checker.check(structure, lineage=entry_lineage, found_at=entry.created_at)
    result.flag, result.nearest_formula, result.amd
"""

from __future__ import annotations

import json
import logging
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from gnomon.storage.chemsys import subsystems
from gnomon.storage.documents import Candidate, Entry
from gnomon.storage.repository import Repository

log = logging.getLogger(__name__)

#: Neighbours per site in the AMD vector; 100 is the package's usual choice for crystals.
AMD_NEIGHBOURS = 100


class NoveltyFlag(StrEnum):
    new = "new"
    known = "known"
    ordering_of_disordered = "ordering-of-disordered"


@dataclass(frozen=True)
class Reference:
    """A phase a discovery is compared with.

    ``lineage`` names the chain of calculations a stored phase belongs to (the candidate it was
    generated as; a DFT entry started from an ML-relaxed one shares its lineage): a phase is
    never compared with its own lineage. ``found_at`` is when a campaign found it (None for
    what was known from the start): a discovery is compared only with what was found before it.
    """

    id: str
    structure: Structure = field(repr=False, compare=False)
    source: str
    lineage: str | None = None
    found_at: datetime | None = None

    @property
    def formula(self) -> str:
        return self.structure.composition.reduced_formula

    @property
    def chemsys(self) -> str:
        return self.structure.composition.chemical_system

    @property
    def is_ordered(self) -> bool:
        return self.structure.is_ordered


@dataclass(frozen=True)
class Novelty:
    """What the checks found for one phase; ``nearest_*`` is the matched phase when there is a
    match, else the nearest compound of its chemical space by AMD (None when there is none)."""

    flag: NoveltyFlag
    nearest_id: str | None = None
    nearest_formula: str | None = None
    nearest_source: str | None = None
    amd: float | None = None  # Å, at the nearest phase's density

    def as_dict(self) -> dict[str, Any]:
        return {
            "novelty": self.flag.value,
            "nearest_known_id": self.nearest_id,
            "nearest_known_formula": self.nearest_formula,
            "nearest_known_source": self.nearest_source,
            "nearest_known_amd": self.amd,
        }

    def describe(self) -> str:
        """One line for a table: ``new (AMD 0.412 Å to LiMn2O4)``,
        ``known (= Li2O, AMD 0.003 Å)``."""
        if self.nearest_id is None:
            return f"{self.flag.value} (nothing known in its space)"
        amd = f"AMD {self.amd:.3f} Å" if self.amd is not None else "AMD –"
        if self.flag is NoveltyFlag.new:
            return f"{self.flag.value} ({amd} to {self.nearest_formula})"
        return f"{self.flag.value} (= {self.nearest_formula} {self.nearest_id}, {amd})"


def _periodic_set(structure: Structure):
    # heavy: amd
    import amd

    if structure.is_ordered:
        return amd.periodicset_from_pymatgen_structure(structure)
    # amd's converter asks for atomic numbers, which a disordered site has not; AMD uses only
    # the sites' positions
    return amd.PeriodicSet(motif=structure.cart_coords, cell=structure.lattice.matrix)


def unit_amd(structure: Structure, k: int = AMD_NEIGHBOURS) -> np.ndarray:
    """The AMD of ``structure`` scaled to one Å³ per site (scale-free; multiply by a length)."""
    # heavy: amd
    import amd

    scaled = structure.copy()
    scaled.scale_lattice(float(len(scaled)))
    return np.asarray(amd.AMD(_periodic_set(scaled), k), dtype=float)


def site_length(structure: Structure) -> float:
    """(V / N)^(1/3) in Å: the length that carries a unit AMD to ``structure``'s density."""
    return float((structure.volume / len(structure)) ** (1.0 / 3.0))


def _compound_spaces(chemsys: str) -> list[str]:
    """``chemsys`` and its sub-spaces of two or more elements (where AMD neighbours are sought)."""
    return subsystems(chemsys, min_arity=2)


@dataclass
class NoveltyChecker:
    """Flags phases as new, known, or an ordering of a known disordered phase.

    ``ltol``, ``stol``, ``angle_tol`` are StructureMatcher's (pymatgen's defaults): a relaxed
    cell still matches its experimental structure.
    """

    references: Sequence[Reference]
    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0
    neighbours: int = AMD_NEIGHBOURS
    _amd: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def _by_chemsys(self) -> dict[str, list[Reference]]:
        out: dict[str, list[Reference]] = defaultdict(list)
        for ref in self.references:
            out[ref.chemsys].append(ref)
        return out

    @cached_property
    def _exact(self):
        # heavy: pymatgen.analysis
        from pymatgen.analysis.structure_matcher import ElementComparator, StructureMatcher

        # the same element on every site; oxidation-state labels are not a crystal's identity
        return StructureMatcher(
            ltol=self.ltol, stol=self.stol, angle_tol=self.angle_tol, comparator=ElementComparator()
        )

    @cached_property
    def _order_disorder(self):
        # heavy: pymatgen.analysis
        from pymatgen.analysis.structure_matcher import (
            OrderDisorderElementComparator,
            StructureMatcher,
        )

        # an ordering lives in a supercell of the disordered phase's cell
        return StructureMatcher(
            ltol=self.ltol,
            stol=self.stol,
            angle_tol=self.angle_tol,
            comparator=OrderDisorderElementComparator(),
            attempt_supercell=True,
        )

    def _ref_amd(self, ref: Reference) -> np.ndarray:
        if ref.id not in self._amd:
            self._amd[ref.id] = unit_amd(ref.structure, self.neighbours)
        return self._amd[ref.id]

    def _pool(
        self, chemsys: str, lineage: str | None, found_at: datetime | None
    ) -> list[Reference]:
        pool = []
        for space in _compound_spaces(chemsys):
            for ref in self._by_chemsys.get(space, ()):
                if lineage is not None and ref.lineage == lineage:
                    continue
                if ref.found_at is not None and found_at is not None and ref.found_at >= found_at:
                    continue
                pool.append(ref)
        return pool

    def check(
        self, structure: Structure, *, lineage: str | None = None, found_at: datetime | None = None
    ) -> Novelty:
        """The flag of ``structure`` and its nearest known phase (see :class:`Reference` for
        ``lineage`` and ``found_at``)."""
        comp = structure.composition
        pool = self._pool(comp.chemical_system, lineage, found_at)
        if not pool:
            return Novelty(NoveltyFlag.new)
        mine = unit_amd(structure, self.neighbours)
        amd = {
            ref.id: site_length(ref.structure) * float(np.max(np.abs(mine - self._ref_amd(ref))))
            for ref in pool
        }
        reduced = comp.reduced_formula
        fractions = comp.fractional_composition
        exact = [
            r
            for r in pool
            if r.is_ordered and r.formula == reduced and self._fit(self._exact, structure, r)
        ]
        if exact:
            return self._result(NoveltyFlag.known, exact, amd)
        orderings = [
            r
            for r in pool
            if not r.is_ordered
            and r.structure.composition.fractional_composition.almost_equals(
                fractions, rtol=0.01, atol=0.005
            )
            and self._fit(self._order_disorder, structure, r)
        ]
        if orderings:
            return self._result(NoveltyFlag.ordering_of_disordered, orderings, amd)
        return self._result(NoveltyFlag.new, pool, amd)

    @staticmethod
    def _fit(matcher, structure: Structure, ref: Reference) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about partial occupancies in fits
            return bool(matcher.fit(structure, ref.structure))

    @staticmethod
    def _result(flag: NoveltyFlag, refs: Sequence[Reference], amd: Mapping[str, float]) -> Novelty:
        best = min(refs, key=lambda r: (amd[r.id], r.id))
        return Novelty(flag, best.id, best.formula, best.source, amd[best.id])


# -- what counts as known ---------------------------------------------------------------------


def stored_references(repo: Repository, chemsystems: Iterable[str]) -> list[Reference]:
    """Every stored entry with a structure in the compound spaces of ``chemsystems``: the
    shipped known phases a campaign relaxed (source ``known``), imported entries
    (``imported``), and campaign phases (``campaign <name>``, with their lineage and the time
    they were found)."""
    spaces = sorted({s for c in chemsystems for s in _compound_spaces(c)})
    if not spaces:
        return []
    entries = [e for e in repo.query(Entry, {"chemsys": spaces}) if e.structure is not None]
    ids = sorted({e.candidate_id for e in entries if e.candidate_id})
    candidates = {c.id: c for c in repo.query(Candidate, {"id": ids})} if ids else {}
    lineage = entry_lineages(
        entries, {c.id: c.parent_entry_id for c in candidates.values() if c.parent_entry_id}
    )
    out = []
    for e in entries:
        cand = candidates.get(e.candidate_id) if e.candidate_id else None
        if e.candidate_id is None:
            source, found_at = "imported", None
        elif cand is not None and cand.generator in ("known", "reference"):
            source, found_at = "known", None
        else:
            source, found_at = (
                f"campaign {e.campaign or (cand.campaign if cand else None) or '?'}",
                e.created_at,
            )
        out.append(
            Reference(e.id, Structure.from_dict(e.structure), source, lineage[e.id], found_at)
        )
    return out


def entry_lineages(
    entries: Sequence[Entry], candidate_parents: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Each entry's lineage: the candidate of the first entry in its chain of parents (an
    ML-relaxed entry and the DFT entry started from it share one). An entry's parent is its
    ``parent_entry_id``, else its candidate's (``candidate_parents``: candidate id -> entry id)."""
    by_id = {e.id: e for e in entries}
    candidate_parents = candidate_parents or {}
    out: dict[str, str] = {}

    def root(e: Entry, seen: set[str]) -> str:
        if e.id in out:
            return out[e.id]
        parent_id = e.parent_entry_id or candidate_parents.get(e.candidate_id or "")
        parent = by_id.get(parent_id) if parent_id else None
        if parent is not None and parent.id not in seen:
            key = root(parent, seen | {e.id})
        else:
            key = e.candidate_id or parent_id or e.id
        out[e.id] = key
        return key

    for e in entries:
        root(e, set())
    return out


def references_from_files(paths: Iterable[str | Path]) -> list[Reference]:
    """Known phases from CIF files (every block; partial occupancies kept, so a disordered
    phase stays disordered) or pymatgen Structure JSON. Raises ValueError naming the file."""
    out = []
    for path in map(Path, paths):
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(path.read_text())
                docs = data if isinstance(data, list) else [data]
                structures = [Structure.from_dict(d) for d in docs]
            else:
                # heavy: pymatgen.io
                from pymatgen.io.cif import CifParser

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    structures = CifParser(str(path), occupancy_tolerance=1.0).parse_structures(
                        primitive=False
                    )
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file of known phases") from None
        except Exception as exc:  # noqa: BLE001 - whatever the readers raise means "not a structure file"
            raise ValueError(
                f"{path}: no crystal structure could be read ({type(exc).__name__}: {exc})"
            ) from None
        if not structures:
            raise ValueError(f"{path}: no crystal structure in the file")
        out += [
            Reference(f"{path.name}#{i}" if len(structures) > 1 else path.name, s, f"file {path}")
            for i, s in enumerate(structures)
        ]
    return out


def novelty_of_rows(
    repo: Repository, rows: Sequence[Mapping[str, Any]], extra: Sequence[Reference] = ()
) -> dict[str, Novelty | None]:
    """The novelty of each phase row (:class:`~gnomon.pipeline.thermo.phase_query.PhaseQuery`
    output) by id. None for a row that is not a discovery (a known, imported or elemental
    phase is known by definition) or that has no structure to compare."""
    wanted = [r for r in rows if r.get("_structure") and "-" in r["chemsys"]]
    out: dict[str, Novelty | None] = {r["id"]: None for r in rows}
    if not wanted:
        return out
    spaces = sorted({r["chemsys"] for r in wanted})
    stored = stored_references(repo, spaces)
    checker = NoveltyChecker([*stored, *extra])
    mine = {ref.id: ref for ref in stored}
    for r in wanted:
        own = mine.get(r["id"])
        if own is not None and own.found_at is None:
            continue  # known, imported: not a discovery
        structure = own.structure if own is not None else Structure.from_dict(r["_structure"])
        out[r["id"]] = checker.check(
            structure, lineage=own.lineage if own else None, found_at=own.found_at if own else None
        )
    return out


def novelty_text(result: Novelty | None, origin: str) -> str:
    """A table cell: the novelty of a discovery, or where a phase that is none came from
    (``(known)``, ``(imported)``, ``(reference)``; origins as
    :func:`gnomon.pipeline.thermo.known.phase_origins` names them)."""
    if result is not None:
        return result.describe()
    return f"({origin})" if origin != "campaign" else "–"
