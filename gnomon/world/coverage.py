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

from pymatgen.core import Element

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


def ternaries(cations: Sequence[str], anions: Sequence[str],
              partners: int) -> list[tuple[str, list[str]]]:
    """A–B–X ternaries, anion by anion: each B cation (not alkali or alkaline earth) with
    ``partners`` of the A cations (alkali and alkaline earth), chosen cyclically so that the
    A cations share the B cations evenly and each anion pairs them differently.

    Every A–B–X system of a 38-cation world is 261 per anion; this design reaches every cation
    in ternary chemistry with every anion at ``partners`` systems per B cation, the way the
    world's own ternaries (A–B–X, :func:`gnomon.world.systems.world_systems`) are made."""
    a_site = [c for c in cations if _s_block(c)]
    b_site = [c for c in cations if not _s_block(c)]
    if not a_site or not b_site or partners <= 0:
        return []
    k = min(partners, len(a_site))
    return [(anion, list(dict.fromkeys(
                chemsys_of([a_site[(i * k + j + m) % len(a_site)], b, anion])
                for i, b in enumerate(b_site) for m in range(k))))
            for j, anion in enumerate(anions)]


def _s_block(symbol: str) -> bool:
    el = Element(symbol)
    return el.is_alkali or el.is_alkaline


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
    ternary: Counter = field(default_factory=Counter)  # "O": cation–cation–anion systems held

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
                "ternary_systems": {a: self.ternary[a] for a in self.anions if self.ternary[a]},
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
    ternary_systems: dict[str, set[str]] = {}
    for r in rows:
        els = r["chemsys"].split("-")
        if len(els) == 2:
            if chemsys_of(els) in wanted:
                cov.binary[chemsys_of(els)] += 1
            elif all(e in cov.cations for e in els):
                cov.between[chemsys_of(els)] += 1
            continue
        anions_in = [e for e in els if e in cov.anions]
        if (len(els) == 3 and len(anions_in) == 1
                and sum(e in cov.cations for e in els) == 2):  # cation–cation–anion
            ternary_systems.setdefault(anions_in[0], set()).add(chemsys_of(els))
        for c in (e for e in els if e in cov.cations):
            for a in (e for e in els if e in cov.anions):
                cov.larger[chemsys_of([c, a])] += 1
    cov.ternary.update({a: len(s) for a, s in ternary_systems.items()})
    return cov


def world_coverage(rows: list[dict[str, Any]], held: Iterable[str],
                   anions: Sequence[str] = COVER_ANIONS) -> Coverage:
    """The cation–anion coverage of a world's rows, over its elements (the world's own and
    any a cover added)."""
    present = {e for r in rows for e in r["chemsys"].split("-")}
    return coverage(rows, held, cations_of(sorted(present), anions), anions)
