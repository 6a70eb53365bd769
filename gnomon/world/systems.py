"""Which chemical systems a world holds, and which of them it holds out.

A fixed, seeded choice of binaries (cation-anion), ternaries and quaternaries over 48
elements, so that every world built from this code covers the same systems; a seeded 20 % of
each arity, whole systems, is held out (training never sees them).
"""

from __future__ import annotations

import random
from collections import defaultdict

from gnomon.storage.chemsys import chemsys_of

SEED = 2026
HELDOUT_FRACTION = 0.2

ALKALI = ["Li", "Na", "K", "Rb", "Cs"]
ALKALINE = ["Mg", "Ca", "Sr", "Ba"]
TRANSITION = ["Sc", "Y", "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mo", "W", "Mn", "Fe", "Co",
              "Ni", "Cu", "Ag", "Zn", "Cd"]
POST = ["B", "Al", "Ga", "In", "Si", "Ge", "Sn", "Pb", "Sb", "Bi"]
ANIONS = ["O", "S", "Se", "Te", "N", "P", "F", "Cl", "Br", "I"]
ELEMENTS = ALKALI + ALKALINE + TRANSITION + POST + ANIONS


def _binaries(rng: random.Random, n_binary: int) -> list[str]:
    """Every cation once with a random anion, every anion at least twice, then random pairs."""
    cations = ALKALI + ALKALINE + TRANSITION + POST
    binaries: list[str] = [chemsys_of([c, rng.choice(ANIONS)]) for c in cations]
    for a in ANIONS:
        for c in rng.sample(cations, 2):
            binaries.append(chemsys_of([c, a]))
    binaries = sorted(set(binaries))
    while len(binaries) < n_binary:
        binaries = sorted(set(binaries) | {chemsys_of([rng.choice(cations), rng.choice(ANIONS)])})
    return binaries[:n_binary] if len(binaries) > n_binary else binaries


def world_systems(n_binary: int = 46, n_ternary: int = 36, n_quaternary: int = 12) -> list[str]:
    """A fixed, seeded choice of systems: every element appears in some binary."""
    rng = random.Random(SEED)
    binaries = _binaries(rng, n_binary)
    ternaries: set[str] = set()
    while len(ternaries) < n_ternary:
        a = rng.choice(ALKALI + ALKALINE)
        b = rng.choice(TRANSITION + POST)
        ternaries.add(chemsys_of([a, b, rng.choice(ANIONS)]))
    quaternaries: set[str] = set()
    while len(quaternaries) < n_quaternary:
        a = rng.choice(ALKALI + ALKALINE)
        b = rng.choice(TRANSITION + POST)
        x, y = rng.sample(ANIONS, 2) if rng.random() < 0.5 else (rng.choice(ANIONS), None)
        fourth = y or rng.choice([e for e in TRANSITION + POST + ALKALINE if e not in (a, b)])
        quaternaries.add(chemsys_of([a, b, x, fourth]))
    return sorted(binaries) + sorted(ternaries) + sorted(quaternaries)


def heldout_systems(systems: list[str]) -> list[str]:
    """A seeded HELDOUT_FRACTION of each arity, whole systems."""
    rng = random.Random(SEED + 1)
    held: list[str] = []
    by_arity: dict[int, list[str]] = defaultdict(list)
    for s in systems:
        by_arity[s.count("-") + 1].append(s)
    for arity in sorted(by_arity):
        group = sorted(by_arity[arity])
        k = max(1, round(HELDOUT_FRACTION * len(group)))
        held.extend(rng.sample(group, k))
    return sorted(held)
