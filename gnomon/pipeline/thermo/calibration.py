"""A universal potential's energies tied to the campaign's scheme (issue 26, lever 2).

A zero-shot potential (SevenNet-0) relaxes a candidate well, but its energies live in its own
scheme: its formation energies sit systematically above the oracle's, so on its own hull almost
nothing looks stable and the mlip stage loses its recall to an offset. Both schemes compute the
same structures, so the offset can be measured: on entries both know, the campaign's energy per
atom is fitted as

    E_campaign ~ slope * E_mlip + sum_el x_el * mu_el

(``x_el`` the atomic fractions, ``mu_el`` a per-element reference energy) by least squares. The
slope is fitted only where it helps: both forms are fitted on part of the systems and judged on
the rest (validation systems, drawn from the fit's own systems), and the better form is refitted
on all. Systems a benchmark holds out are excluded by name before anything is fitted: their
labels must never shape the calibration that judges them.

A calibrated energy is then an energy in the campaign's scheme, and its e_above_hull is taken
against the campaign's own hull (pymatgen's :class:`PhaseDiagram`), as any entry of that scheme.
The fit is stored (:meth:`Calibration.as_dict`): coefficients, how many entries, the residual
MAE, which systems, which were excluded, so a gate's decisions can be reproduced.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Element

from gnomon.storage.chemsys import chemsys_of

#: Below this many entries per fitted coefficient a fit is refused: a handful of pairs would
#: give each element an offset that only memorises them.
MIN_ENTRIES_PER_COEFFICIENT = 2.0
#: eV/atom: a pair the fit misses by more than this is a failure of one of the potentials (a
#: SevenNet single point at -32 eV/atom for a GeI3 cell CHGNet relaxed), not an offset to learn;
#: it is dropped and the fit redone, up to ``MAX_OUTLIER_SHARE`` of the pairs.
OUTLIER = 1.0
MAX_OUTLIER_SHARE = 0.1
#: Share of the fit's compound systems held aside to judge whether the slope helps.
VALIDATION_FRACTION = 0.2


class CalibrationError(ValueError):
    """No calibration can be fitted from these pairs (too few, or none left after exclusion)."""


@dataclass(frozen=True)
class Pair:
    """One structure both schemes computed: its composition and its energy per atom in each."""

    key: str
    composition: Composition
    mlip_energy_per_atom: float
    campaign_energy_per_atom: float

    @property
    def chemsys(self) -> str:
        return canonical_chemsys(self.composition)


def canonical_chemsys(composition: Composition | str) -> str:
    """``"A-B"`` with elements sorted, for a composition or a chemsys string."""
    if isinstance(composition, str) and "-" in composition:
        return chemsys_of(composition.split("-"))
    return chemsys_of(str(el) for el in Composition(composition).elements)


@dataclass(frozen=True)
class Calibration:
    """A fitted map from a potential's scheme to the campaign's: ``mu`` per element (eV/atom)
    and ``slope`` on the potential's energy per atom (1.0: offsets only)."""

    source_scheme: str
    target_scheme: str
    mu: dict[str, float]
    slope: float = 1.0
    n_entries: int = 0
    n_outliers: int = 0  # pairs dropped as failures (misfit by more than OUTLIER)
    mae: float = 0.0  # eV/atom, residual over the fitted entries
    validation: dict[str, float] = field(default_factory=dict)  # form -> validation MAE
    systems: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    def covers(self, composition: Composition | str) -> bool:
        return all(str(el) in self.mu for el in Composition(composition).elements)

    def energy_per_atom(self, composition: Composition | str, mlip_energy_per_atom: float) -> float:
        """The campaign-scheme energy per atom of an entry the potential computed."""
        comp = Composition(composition)
        missing = [str(el) for el in comp.elements if str(el) not in self.mu]
        if missing:
            raise CalibrationError(f"{comp.reduced_formula}: no calibrated reference for "
                                   f"{', '.join(missing)}")
        shift = sum(comp.get_atomic_fraction(el) * self.mu[str(el)] for el in comp.elements)
        return float(self.slope * mlip_energy_per_atom + shift)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(**data)


def _design(pairs: Sequence[Pair], elements: list[str], linear: bool) -> np.ndarray:
    cols = [[p.composition.get_atomic_fraction(Element(el)) for el in elements] for p in pairs]
    x = np.asarray(cols, dtype=float).reshape(len(pairs), len(elements))
    if linear:
        x = np.hstack([x, np.array([[p.mlip_energy_per_atom] for p in pairs])])
    return x


def _solve(pairs: Sequence[Pair], elements: list[str], linear: bool) -> tuple[dict, float]:
    """Least squares of one form: (mu by element, slope)."""
    x = _design(pairs, elements, linear)
    e_c = np.array([p.campaign_energy_per_atom for p in pairs])
    e_m = np.array([p.mlip_energy_per_atom for p in pairs])
    target = e_c if linear else e_c - e_m
    coef, *_ = np.linalg.lstsq(x, target, rcond=None)
    slope = float(coef[-1]) if linear else 1.0
    return {el: float(c) for el, c in zip(elements, coef, strict=False)}, slope


def _residuals(pairs: Sequence[Pair], mu: dict[str, float], slope: float) -> np.ndarray:
    return np.array([
        slope * p.mlip_energy_per_atom
        + sum(p.composition.get_atomic_fraction(Element(el)) * mu.get(el, 0.0)
              for el in map(str, p.composition.elements))
        - p.campaign_energy_per_atom
        for p in pairs
    ])


def _trimmed(pairs: Sequence[Pair], elements: list[str],
             linear: bool) -> tuple[dict, float, list[Pair]]:
    """The fit of one form with the pairs it misses by more than ``OUTLIER`` dropped, worst
    first, one at a time (one wild pair drags every residual, so a batch would drop good ones
    with it), at most ``MAX_OUTLIER_SHARE`` of them."""
    kept = list(pairs)
    for _ in range(int(MAX_OUTLIER_SHARE * len(pairs)) + 1):
        mu, slope = _solve(kept, elements, linear)
        misses = np.abs(_residuals(kept, mu, slope))
        worst = int(np.argmax(misses))
        if misses[worst] <= OUTLIER:
            break
        kept.pop(worst)
    else:
        mu, slope = _solve(kept, elements, linear)
    return mu, slope, kept


def _mae(pairs: Sequence[Pair], mu: dict[str, float], slope: float) -> float:
    return float(np.mean(np.abs(_residuals(pairs, mu, slope)))) if pairs else float("nan")


def _median_abs(pairs: Sequence[Pair], mu: dict[str, float], slope: float) -> float:
    """Median absolute error: one potential's failure on a validation pair must not choose
    the form."""
    return float(np.median(np.abs(_residuals(pairs, mu, slope))))


def _validation_split(pairs: Sequence[Pair], fraction: float,
                      seed: int) -> tuple[list[Pair], list[Pair]]:
    """(fit, validation): whole compound systems aside; elements always fitted."""
    compounds = sorted({p.chemsys for p in pairs if len(p.composition.elements) > 1})
    rng = random.Random(seed)
    aside = set(rng.sample(compounds, int(round(fraction * len(compounds)))))
    fit = [p for p in pairs if p.chemsys not in aside]
    return fit, [p for p in pairs if p.chemsys in aside]


def fit_calibration(
    pairs: Sequence[Pair],
    *,
    source_scheme: str,
    target_scheme: str,
    exclude: Collection[str] = (),
    slope: bool | None = None,
    validation_fraction: float = VALIDATION_FRACTION,
    seed: int = 0,
) -> Calibration:
    """Fit per-element references (and a slope, where it helps) on ``pairs``.

    ``exclude`` names chemical systems (``"Fe-S"``; any element order) whose pairs are dropped
    before anything is fitted or judged: a benchmark's held-out systems. ``slope``: True or
    False forces the form; None chooses it by validation MAE on ``validation_fraction`` of the
    compound systems (whole systems, seeded), then refits the chosen form on every pair.
    """
    excluded = sorted({canonical_chemsys(s) for s in exclude})
    kept = [p for p in pairs if p.chemsys not in set(excluded)]
    elements = sorted({str(el) for p in kept for el in p.composition.elements})
    if not kept or len(kept) < MIN_ENTRIES_PER_COEFFICIENT * (len(elements) + 1):
        raise CalibrationError(f"{len(kept)} pairs for {len(elements)} elements: too few to fit")
    validation: dict[str, float] = {}
    if slope is None:
        fit, val = _validation_split(kept, validation_fraction, seed)
        if val and len(fit) >= MIN_ENTRIES_PER_COEFFICIENT * (len(elements) + 1):
            for form, linear in (("offsets", False), ("linear", True)):
                mu, s, _ = _trimmed(fit, elements, linear)
                validation[form] = _median_abs(val, mu, s)
            slope = validation["linear"] < validation["offsets"]
        else:
            slope = False
    mu, s, used = _trimmed(kept, elements, bool(slope))
    return Calibration(
        source_scheme=source_scheme, target_scheme=target_scheme, mu=mu, slope=s,
        n_entries=len(used), n_outliers=len(kept) - len(used), mae=_mae(used, mu, s),
        validation=validation,
        systems=sorted({p.chemsys for p in kept}), excluded=excluded,
    )


def e_above_hull(pd: PhaseDiagram, composition: Composition | str,
                 energy_per_atom: float) -> float:
    """Energy above ``pd``'s hull of a hypothetical entry (negative below it), pymatgen's own
    ``get_hull_energy_per_atom``: the same figure as ``pd.get_e_above_hull`` of that entry."""
    return float(energy_per_atom - pd.get_hull_energy_per_atom(Composition(composition)))


def calibrated_e_above_hull(calibration: Calibration, pd: PhaseDiagram,
                            composition: Composition | str,
                            mlip_energy_per_atom: float) -> float:
    """e_above_hull in the campaign's scheme of an entry the potential computed, against the
    campaign's hull ``pd``."""
    return e_above_hull(pd, composition,
                        calibration.energy_per_atom(composition, mlip_energy_per_atom))
