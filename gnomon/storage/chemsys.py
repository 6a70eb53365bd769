"""The chemical-system key: every record is indexed by it, so it has one spelling.

A chemical system is named by its elements, sorted and joined by ``-`` (``Li-Mn-O``). Two
names of one system (``O-Li``, ``Li-O-Li``) would index as two, and a hull built on one would
miss entries stored under the other; everything that names a system goes through here.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations


def chemsys_of(elements: Iterable[str]) -> str:
    """The name of the system of ``elements``: distinct symbols, sorted, joined by ``-``."""
    return "-".join(sorted({el for el in elements if el}))


def canonical_chemsys(chemsys: str) -> str:
    """``"O-Li"`` -> ``"Li-O"``: one system, one name (empty parts are dropped)."""
    return chemsys_of(chemsys.split("-"))


def arity(chemsys: str) -> int:
    """How many elements a chemical system has (``Li-Mn-O``: 3; the empty name: 0)."""
    return len(canonical_chemsys(chemsys).split("-")) if canonical_chemsys(chemsys) else 0


def chemical_systems(elements: Iterable[str], max_arity: int | None = None,
                     min_arity: int = 2) -> list[str]:
    """Every sub-system of ``elements`` with ``min_arity``..``max_arity`` elements, smaller
    first; ``max_arity`` None means all of them (the whole space is its own sub-system)."""
    els = sorted({el for el in elements if el})
    top = len(els) if max_arity is None else min(max_arity, len(els))
    if min_arity < 1 or top < min_arity:
        return []
    return ["-".join(combo) for r in range(min_arity, top + 1) for combo in combinations(els, r)]


def subsystems(chemsys: str, min_arity: int = 1) -> list[str]:
    """Every system inside ``chemsys`` with at least ``min_arity`` elements, itself included,
    smaller first."""
    return chemical_systems(chemsys.split("-"), min_arity=max(min_arity, 1))
