"""Asking the database which phases were found: the query behind `gnomon phases`, the Python
API and the HTTP service.

It must stay quick on a database of 10^5 phases, where a person asks for the first screenful:
the chemical systems that hold matching phases are read from the (scheme, chemsys) index, put
in the order people read them, and their phases are then read a few systems at a time, as raw
documents, until enough rows are in hand; the entries behind them are read for those rows
only. Every row is then the same as if all phases had been read and sorted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pymatgen.core import Element

from gnomon.pipeline.spacegroup import stored_spacegroup
from gnomon.storage.chemsys import chemsys_of, subsystems
from gnomon.storage.documents import Entry, Phase, cell_formula
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

#: A result longer than this shows no space group for an entry stored without one (None, a
#: table's ``-``) rather than running spglib on each (up to a second a cell); the hull engine
#: stores every new entry's group, so only entries from before gnomon kept it lack one.
SPACEGROUP_ON_THE_FLY = 300

# systems read per query: few at first (a screenful needs a handful), doubling up to one
# IN (...) clause of the SQLite backend
_FIRST_SYSTEMS, _MOST_SYSTEMS = 8, 500


def normalise_chemsys(chemsys: str) -> str:
    """A user's spelling of a system (``O,Li``, ``Li-O-Li``) as its one name, or a clear error
    naming the symbol that is not an element."""
    elements = [e.strip() for e in chemsys.replace(",", "-").split("-") if e.strip()]
    for el in elements:
        if not Element.is_valid_symbol(el):
            raise ValueError(f"unknown element {el!r} in chemical system {chemsys!r}")
    return chemsys_of(elements)


def _at_most(e_above_hull: float | None, cap: float) -> bool:
    return e_above_hull is not None and e_above_hull <= cap + 1e-12


def _system_order(chemsys: str) -> tuple[int, str]:
    """Smaller systems first, then by name: the order of a phases table."""
    return chemsys.count("-"), chemsys


def _within_system_order(doc: Mapping[str, Any]) -> tuple[float, str]:
    """Lowest above the hull first (a phase without a hull last), then by formula."""
    e = doc.get("e_above_hull")
    return (e if e is not None else float("inf")), doc["reduced_formula"]


@dataclass
class PhaseQuery:
    """Which phases to return, in the order people read them: by scheme, by chemical system
    (smaller first), then lowest above the hull first.

    ``chemsys`` selects a whole chemical space (every subsystem, as a hull needs);
    ``elements`` selects phases that contain all of the given elements; ``limit`` None is
    every row. ``spacegroups`` says whether a space group missing from an entry is computed:
    None computes it for results of at most :data:`SPACEGROUP_ON_THE_FLY` rows.
    """

    chemsys: str | None = None
    elements: list[str] | None = None
    scheme: str | None = None
    stable: bool = False
    max_e_above_hull: float | None = None
    limit: int | None = None
    spacegroups: bool | None = None

    def run(self, repo: Repository) -> list[dict[str, Any]]:
        """Every row of the query, up to ``limit``."""
        return list(self.rows(repo))

    def rows(self, repo: Repository) -> Iterator[dict[str, Any]]:
        """The rows one batch of chemical systems at a time (a caller can write them as they
        come), up to ``limit``."""
        compute = self.computes_spacegroups(repo)
        left = self.limit
        for docs in self._phase_batches(repo):
            if left is not None:
                docs = docs[:left]
                left -= len(docs)
            entries = {d["id"]: d for d in repo.find("entries", {"id": [d["id"] for d in docs]})}
            for d in docs:
                yield row_of(d, entries.get(d["id"]), compute)
            if left == 0:
                return

    def computes_spacegroups(self, repo: Repository) -> bool:
        """Whether a space group missing from an entry is computed (``spacegroups``; when
        None, whether the result has at most :data:`SPACEGROUP_ON_THE_FLY` rows)."""
        if self.spacegroups is not None:
            return self.spacegroups
        bound = self.limit if self.limit is not None else self._upper_count(repo)
        return bound <= SPACEGROUP_ON_THE_FLY

    def count(self, repo: Repository) -> int:
        """How many rows the query has without its ``limit``, read from the indexes unless
        ``max_e_above_hull`` needs the phases' values."""
        if self.max_e_above_hull is not None:
            return sum(len(docs) for docs in self._phase_batches(repo))
        return self._upper_count(repo)

    def schemes(self, repo: Repository) -> list[str]:
        """The schemes the query's rows come from."""
        return sorted({scheme for scheme, _ in self._systems(repo)})

    # -- how -------------------------------------------------------------------------------
    def _base_filters(self) -> dict[str, Any]:
        return {"is_stable": True} if self.stable else {}

    def _systems(self, repo: Repository) -> list[tuple[str, str]]:
        """(scheme, chemsys) of every system holding a phase the query may return, in order;
        read from the indexes, not the phases."""
        base = self._base_filters()
        wanted = set(subsystems(normalise_chemsys(self.chemsys))) if self.chemsys else None
        holding = (
            set(normalise_chemsys("-".join(self.elements)).split("-")) if self.elements else None
        )
        schemes = [self.scheme] if self.scheme else sorted(repo.distinct("phases", "scheme", base))
        out: list[tuple[str, str]] = []
        for scheme in schemes:
            present = repo.distinct("phases", "chemsys", {**base, "scheme": scheme})
            kept = [
                c
                for c in present
                if (wanted is None or c in wanted)
                and (holding is None or holding <= set(c.split("-")))
            ]
            out += [(scheme, c) for c in sorted(kept, key=_system_order)]
        return out

    def _batches(self, repo: Repository) -> Iterator[tuple[str, list[str]]]:
        """The systems in order, as (scheme, systems) batches that grow from a few to many."""
        systems = self._systems(repo)
        size, start = _FIRST_SYSTEMS, 0
        while start < len(systems):
            scheme = systems[start][0]
            batch = [c for s, c in systems[start : start + size] if s == scheme]
            yield scheme, batch
            start += len(batch)
            size = min(2 * size, _MOST_SYSTEMS)

    def _phase_batches(self, repo: Repository) -> Iterator[list[dict[str, Any]]]:
        """The matching phase documents, batch by batch, each batch in order."""
        base = self._base_filters()
        cap = self.max_e_above_hull
        for scheme, systems in self._batches(repo):
            docs = list(repo.find("phases", {**base, "scheme": scheme, "chemsys": systems}))
            if cap is not None:
                docs = [d for d in docs if _at_most(d.get("e_above_hull"), cap)]
            rank = {c: k for k, c in enumerate(systems)}
            docs.sort(key=lambda d: (rank[d["chemsys"]], *_within_system_order(d)))
            if docs:
                yield docs

    def _upper_count(self, repo: Repository) -> int:
        """The rows without ``max_e_above_hull`` (an upper bound with it), from the indexes."""
        base = self._base_filters()
        if not (self.chemsys or self.elements):
            return repo.count("phases", {**base, "scheme": self.scheme} if self.scheme else base)
        return sum(
            repo.count("phases", {**base, "scheme": scheme, "chemsys": systems})
            for scheme, systems in self._batches(repo)
        )


def row_of(
    phase: Mapping[str, Any], entry: Mapping[str, Any] | None, spacegroup: bool = True
) -> dict[str, Any]:
    """A stored phase and its entry (documents, as the repository returns them) as people read
    them: ``formula`` is pymatgen's reduced formula (``Li3MnO3``, ``Li``), ``cell_formula`` the
    computed cell's (``Li6Mn2O6``; None without its entry); ``spacegroup`` tells polymorphs
    apart (None for an entry without a structure, or without a stored group when
    ``spacegroup`` is False)."""
    structure = entry.get("structure") if entry else None
    data = entry.get("data") if entry else None
    if entry is None:
        group = None
    elif spacegroup:
        group = stored_spacegroup(data, structure)
    else:
        group = stored_spacegroup(data, None)
    row = {
        "id": phase["id"],
        "formula": phase["reduced_formula"],
        "reduced_formula": phase["reduced_formula"],
        "cell_formula": cell_formula(entry["formula"]) if entry else None,
        "chemsys": phase["chemsys"],
        "scheme": phase["scheme"],
        "spacegroup": group,
        "energy_per_atom": phase["energy_per_atom"],
        "uncorrected_energy_per_atom": (
            entry["uncorrected_energy"] / sum(entry["composition"].values()) if entry else None
        ),
        "formation_energy_per_atom": phase.get("formation_energy_per_atom"),
        "e_above_hull": phase.get("e_above_hull"),
        "decomposition_energy": phase.get("decomposition_energy"),
        "is_stable": phase.get("is_stable"),
        "stable_at_ingest": phase.get("stable_at_ingest"),
        "decomposes_to": phase.get("decomposes_to") or [],
        "nsites": entry["nsites"] if entry else None,
        "source": entry.get("source") if entry else None,
        "candidate_id": entry.get("candidate_id") if entry else None,
    }
    if structure is not None:
        row["_structure"] = structure
    return row


def phase_row(phase: Phase, entry: Entry | None) -> dict[str, Any]:
    """:func:`row_of` for records (the explorer's pages hold records, not documents)."""
    return row_of(dict(phase), dict(entry) if entry else None)
