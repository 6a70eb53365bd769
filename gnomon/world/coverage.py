"""Which cation–anion pairs a world holds: the element-coverage table.

A screening model knows the chemistry it was trained on. A world whose cations meet only a
few of the common anions teaches it little about the rest (rock-salt MgO predicted 1.3 eV/atom
too high, issue 26), so the world counts, for every cation and anion of its element set, the
structures of that binary system, and the cover (:mod:`gnomon.world.cover`) grows the pairs
it lacks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gnomon.storage.chemsys import chemsys_of
from gnomon.world.systems import ANIONS, ELEMENTS

COVER_ANIONS = ("O", "S", "F", "Cl", "Br", "I", "Se", "Te", "N", "P")
"""The common anions in the order a cover grows them: oxides, sulfides and halides first."""
DEFAULT_PER_SYSTEM = 8  # structures per cation–anion binary a cover grows it to


def cations_of(elements: Iterable[str], anions: Sequence[str]) -> list[str]:
    """The elements that are not anions, in the world's order (extra elements after it)."""
    elements = list(dict.fromkeys([*ELEMENTS, *elements]))
    return [e for e in elements if e not in set(anions) | set(ANIONS)]


def binaries(cations: Sequence[str], anions: Sequence[str]) -> list[str]:
    """Every cation–anion binary system, anion by anion in the given order (the cover's)."""
    return [chemsys_of([c, a]) for a in anions for c in cations]


def cation_pairs(cations: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Every binary of two of ``cations`` (alloys and intermetallics), grouped by the first
    cation in the given order: each pair once, with the earlier of its two."""
    return [(c, [chemsys_of([c, d]) for d in cations[i + 1:]])
            for i, c in enumerate(cations[:-1])]


@dataclass
class Coverage:
    """Structures per cation–anion binary, and the pairs met only inside larger systems."""

    cations: list[str]
    anions: list[str]
    held_out: set[str]
    binary: Counter = field(default_factory=Counter)  # "Mg-O": structures of that system
    larger: Counter = field(default_factory=Counter)  # "Mg-O": structures of Mg-O-... systems
    between: Counter = field(default_factory=Counter)  # "Li-Mg": structures of that binary

    def count(self, cation: str, anion: str) -> int:
        return self.binary[chemsys_of([cation, anion])]

    @property
    def pairs(self) -> int:
        return len(self.cations) * len(self.anions)

    @property
    def held(self) -> int:
        """Pairs with at least one structure of their binary system."""
        return sum(1 for s in binaries(self.cations, self.anions) if self.binary[s])

    @property
    def cation_pairs(self) -> int:
        return len(self.cations) * (len(self.cations) - 1) // 2

    @property
    def cation_pairs_held(self) -> int:
        """Cation–cation binaries with at least one structure."""
        return sum(1 for n in self.between.values() if n)

    def as_dict(self) -> dict[str, Any]:
        """The manifest's record: the pairs held, and the structures of each."""
        return {"cations": self.cations, "anions": self.anions, "pairs": self.pairs,
                "pairs_held": self.held, "cation_pairs": self.cation_pairs,
                "cation_pairs_held": self.cation_pairs_held,
                "binary_structures": {s: self.binary[s]
                                      for s in binaries(self.cations, self.anions)
                                      if self.binary[s]},
                "only_in_larger_systems": sorted(
                    s for s in binaries(self.cations, self.anions)
                    if not self.binary[s] and self.larger[s])}


def coverage(rows: Iterable[dict[str, Any]], held_out: Iterable[str],
             cations: Sequence[str], anions: Sequence[str]) -> Coverage:
    """Count the world's ``rows`` per cation–anion binary of ``cations`` × ``anions``."""
    cov = Coverage(list(cations), list(anions), {chemsys_of(s.split("-")) for s in held_out})
    wanted = set(binaries(cations, anions))
    for r in rows:
        els = r["chemsys"].split("-")
        if len(els) == 2:
            if chemsys_of(els) in wanted:
                cov.binary[chemsys_of(els)] += 1
            elif all(e in cov.cations for e in els):
                cov.between[chemsys_of(els)] += 1
            continue
        for c in (e for e in els if e in cov.cations):
            for a in (e for e in els if e in cov.anions):
                cov.larger[chemsys_of([c, a])] += 1
    return cov


def world_coverage(rows: list[dict[str, Any]], held: Iterable[str],
                   anions: Sequence[str] = COVER_ANIONS) -> Coverage:
    """The cation–anion coverage of a world's rows, over its elements (the world's own and
    any a cover added)."""
    present = {e for r in rows for e in r["chemsys"].split("-")}
    return coverage(rows, held, cations_of(sorted(present), anions), anions)
