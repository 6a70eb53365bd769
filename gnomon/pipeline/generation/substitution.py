"""Which element may replace which, and by how much a site grows when it does.

SAPS (:mod:`.saps`, :mod:`.saps_fast`) asks two things of ionic chemistry: how likely ion B
replaces ion A in a known crystal (pymatgen's data-mined substitution probabilities, Hautier
et al., Inorg. Chem. 2011), and how much a site's volume changes when it does (ionic radii
where the oxidation state is known, atomic radii otherwise). Both are cached per pair, since a
campaign asks them millions of times.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from importlib.resources import files

import orjson
from pymatgen.core import Element, Species, Structure

GENERATOR = "saps"


# -- substitution probabilities ---------------------------------------------------------------
class IonicSubstitutionTable:
    """pymatgen's data-mined substitution probabilities, keyed by ion strings.

    The same numbers as
    :class:`~pymatgen.core.structure_prediction.substitution_probability.SubstitutionProbability`
    (its ``lambda.json``, ``alpha=-5`` for unseen pairs, ``cond_prob``), computed on strings
    instead of ``Species`` objects: building pymatgen's table hashes Species ~500,000 times
    (seconds, paid again in every worker process); this takes a few hundredths of one.
    """

    def __init__(self, alpha: float = -5.0):
        path = files("pymatgen.core.structure_prediction") / "data" / "lambda.json"
        rows = orjson.loads(path.read_bytes())
        self.alpha = alpha
        self.lambdas: dict[frozenset[str], float] = {}
        ions: set[str] = set()
        for row in rows:
            if "D1+" in row:
                continue
            a, b = str(Species.from_str(row[0])), str(Species.from_str(row[1]))
            ions.update((a, b))
            self.lambdas[frozenset((a, b))] = float(row[2])
        self.ions = sorted(ions)
        self.px: dict[str, float] = dict.fromkeys(self.ions, 0.0)
        for a in self.ions:
            for b in self.ions:
                value = math.exp(self.lambdas.get(frozenset((a, b)), alpha))
                self.px[a] += value / 2
                self.px[b] += value / 2
        self.by_element: dict[str, list[tuple[str, float]]] = {}
        for ion in self.ions:
            sp = Species.from_str(ion)
            self.by_element.setdefault(sp.symbol, []).append((ion, float(sp.oxi_state)))

    def observed(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.lambdas

    def cond_prob(self, new: str, old: str) -> float:
        """P(ion ``new`` replaces ion ``old``), pymatgen's ``cond_prob(new, old)``."""
        return math.exp(self.lambdas.get(frozenset((new, old)), self.alpha)) / self.px[old]


@lru_cache(maxsize=1)
def _probability_table() -> IonicSubstitutionTable:
    return IonicSubstitutionTable()


def table_elements() -> list[str]:
    """Elements that appear in pymatgen's ionic substitution table."""
    return sorted(_probability_table().by_element)


@lru_cache(maxsize=200_000)
def substitution_probability(
    a: str, b: str, a_oxidation: float | None = None
) -> tuple[float, float | None]:
    """``(P(B|A), charge of B's best ion)`` over observed ion pairs with same-sign charges.

    ``a_oxidation`` fixes A's charge (rounded to the nearest ion in the table); without it all
    of A's ions are tried. Pairs never observed together score 0.
    """
    table = _probability_table()
    a_ions = table.by_element.get(a, [])
    if a_oxidation is not None and a_ions:
        exact = [ion for ion in a_ions if ion[1] == round(a_oxidation)]
        if exact:
            a_ions = exact
    best, best_charge = 0.0, None
    for ion_a, qa in a_ions:
        for ion_b, qb in table.by_element.get(b, []):
            if qa * qb <= 0 or not table.observed(ion_a, ion_b):
                continue
            p = table.cond_prob(ion_b, ion_a)
            if p > best:
                best, best_charge = p, qb
    return best, best_charge


@lru_cache(maxsize=4096)
def site_radius(element: str, oxidation: float | None) -> float:
    el = Element(element)
    if oxidation is not None and oxidation == round(oxidation) and oxidation != 0:
        with warnings.catch_warnings():  # pymatgen warns for every ion without tabulated radius
            warnings.simplefilter("ignore")
            try:
                r = Species(element, int(oxidation)).ionic_radius
            except ValueError:
                r = None
        if r:
            return float(r)
    with warnings.catch_warnings():  # and for every element without a calculated radius
        warnings.simplefilter("ignore")
        return float(el.atomic_radius or el.atomic_radius_calculated or 1.5)


def radius_cube_change(a: str, b: str, oxidation: dict[str, float]) -> float:
    """How much one site's r^3 grows when ``b`` replaces ``a``: the volume rescaling's unit
    (module docstring); ``b`` takes the charge the substitution table pairs with ``a``'s."""
    _, b_charge = substitution_probability(a, b, oxidation.get(a))
    return site_radius(b, b_charge) ** 3 - site_radius(a, oxidation.get(a)) ** 3


def oxidation_guess(structure: Structure) -> dict[str, float]:
    """The most likely oxidation state of each element (empty where none is neutral)."""
    comp = structure.composition.reduced_composition
    try:
        guesses = (
            comp.oxi_state_guesses(max_sites=-1)
            if comp.num_atoms > 30
            else comp.oxi_state_guesses()
        )
    except (ValueError, KeyError):
        return {}
    return dict(guesses[0]) if guesses else {}
