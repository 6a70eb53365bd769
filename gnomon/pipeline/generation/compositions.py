"""Compositions for the compositional pipeline: element sets to plausible reduced formulas.

Every stoichiometry of the given elements with at most ``max_atoms`` atoms in the reduced
formula is enumerated (all elements present, coprime counts) and kept when SMACT says it can
be charge balanced:

* ``strict``: some assignment of the elements' common ionic oxidation states (pymatgen's
  ionic-substitution set) is neutral, and it passes Pauling's electronegativity test
  (cations less electronegative than anions).
* ``relaxed``: GNoME's looser rule; any neutral assignment of the ICSD-24 oxidation states,
  no electronegativity test, and intermetallics (all metals) pass.

Both modes allow mixed valence (LiMn2O4 with Mn3+/Mn4+). Compositions already in the
database (as entries or candidates) can be skipped.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from pymatgen.core import Composition, Element

from gnomon.storage import Repository

logger = logging.getLogger(__name__)


class BalanceMode(StrEnum):
    strict = "strict"
    relaxed = "relaxed"
    none = "none"


class CompositionError(ValueError):
    """An element set or formula that no composition can be made of."""


def parse_elements(elements: str | Iterable[str]) -> list[str]:
    """Element symbols from ``"Li,Mn,O"`` or a list, validated, de-duplicated, in order."""
    items = elements.replace(" ", ",").split(",") if isinstance(elements, str) else list(elements)
    out: list[str] = []
    for raw in items:
        sym = raw.strip()
        if not sym:
            continue
        if not Element.is_valid_symbol(sym):
            raise CompositionError(f"unknown element {sym!r}")
        if sym not in out:
            out.append(sym)
    if not out:
        raise CompositionError("no elements given")
    return out


def parse_composition(formula: str) -> Composition:
    """A composition from a formula, with a clear error for nonsense."""
    try:
        comp = Composition(formula)
    except (ValueError, KeyError) as exc:
        raise CompositionError(f"cannot read composition {formula!r}: {exc}") from exc
    if comp.num_atoms <= 0:
        raise CompositionError(f"composition {formula!r} has no atoms")
    for el, amount in comp.items():
        if not isinstance(el, Element):
            raise CompositionError(
                f"cannot read composition {formula!r}: unknown element {str(el)!r}"
            )
        if amount < 0:
            raise CompositionError(f"composition {formula!r} has a negative amount of {el}")
        if not math.isclose(amount, round(amount), abs_tol=1e-6):
            raise CompositionError(
                f"composition {formula!r} has a fractional amount of {el} ({amount}); "
                "give whole numbers of atoms"
            )
    return comp


@lru_cache(maxsize=100_000)
def is_balanced(formula: str, mode: BalanceMode | str = BalanceMode.strict) -> bool:
    """Whether SMACT finds a neutral oxidation-state assignment for ``formula`` in ``mode``."""
    # heavy: smact
    from smact.screening import smact_validity

    mode = BalanceMode(mode)
    if mode is BalanceMode.none:
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode is BalanceMode.strict:
            return bool(
                smact_validity(
                    formula,
                    use_pauling_test=True,
                    include_alloys=False,
                    oxidation_states_set="pymatgen_sp",
                    mixed_valence=True,
                )
            )
        return bool(
            smact_validity(formula, use_pauling_test=False, include_alloys=True, mixed_valence=True)
        )


def stoichiometries(n_elements: int, max_atoms: int) -> Iterator[tuple[int, ...]]:
    """Coprime tuples of ``n_elements`` positive counts summing to at most ``max_atoms``."""
    if n_elements < 1:
        return
    for total in range(n_elements, max_atoms + 1):
        for cut in itertools.combinations(range(1, total), n_elements - 1):
            counts = tuple(b - a for a, b in zip((0, *cut), (*cut, total), strict=True))
            if math.gcd(*counts) == 1:
                yield counts


def known_formulas(repo: Repository, elements: Iterable[str]) -> set[str]:
    """Reduced formulas of entries and candidates stored in the chemical system of ``elements``
    (and its subsystems)."""
    els = sorted(set(elements))
    systems = [
        "-".join(combo) for r in range(1, len(els) + 1) for combo in itertools.combinations(els, r)
    ]
    known = set(repo.distinct("entries", "reduced_formula", {"chemsys": systems}))
    known |= set(repo.distinct("candidates", "reduced_formula", {"chemsys": systems}))
    return known


@dataclass
class CompositionGenerator:
    """Reduced formulas over an element set, filtered by oxidation-state balance.

    Example::

        CompositionGenerator(max_atoms=8).generate(["Li", "Mn", "O"])  # Li2MnO3, LiMnO2, ...
    """

    max_atoms: int = 12
    mode: BalanceMode = BalanceMode.strict
    include_subsystems: bool = False
    min_elements: int = 2

    def generate(self, elements: str | Iterable[str], skip: Iterable[str] = ()) -> Iterator[str]:
        """Reduced formulas, fewest atoms first, none of ``skip`` (reduced formulas)."""
        els = parse_elements(elements)
        if self.max_atoms < len(els) and not self.include_subsystems:
            raise CompositionError(
                f"{len(els)} elements need at least {len(els)} atoms per formula, "
                f"but max_atoms is {self.max_atoms}"
            )
        skipped = {Composition(f).reduced_formula for f in skip}
        sizes = (
            range(max(1, self.min_elements), len(els) + 1)
            if self.include_subsystems
            else [len(els)]
        )
        formulas: list[tuple[int, str]] = []
        for size in sizes:
            for subset in itertools.combinations(els, size):
                for counts in stoichiometries(size, self.max_atoms):
                    comp = Composition(dict(zip(subset, counts, strict=True)))
                    formula = comp.reduced_formula
                    if formula in skipped or not is_balanced(formula, self.mode):
                        continue
                    formulas.append((int(comp.num_atoms), formula))
        seen: set[str] = set()
        for _, formula in sorted(formulas):
            if formula not in seen:
                seen.add(formula)
                yield formula
