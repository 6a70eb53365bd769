"""Measuring a model without leaking: splits by whole chemical system, the metrics every figure
about a model is made of, and learning curves.

Why splits by chemical system
    Structures of one chemical system share elements, local environments and often prototypes;
    a random split puts near-copies of a test structure into training and measures recall, not
    discovery. As in MatFold (Witman & Schindler, 2024), :func:`chemsys_split` holds out whole
    systems: no system is ever on both sides. :func:`random_split` is the in-distribution
    reference it is reported beside. Subsystems of a held-out system may be in training (the
    held-out ``Li-Mn-O`` still lets ``Li-O`` be trained on); that is the question discovery asks.

Metrics (:func:`evaluation_report`)
    * energy per atom: MAE, RMSE, R² (eV/atom);
    * stability as Matbench Discovery defines it (``stable_metrics`` in
      ``matbench_discovery.metrics.discovery``), threshold 0 on e_above_hull: truly stable is
      ``e_above_hull_true <= 0``, predicted stable is ``e_above_hull_pred <= 0``; precision
      TP/(TP+FP), recall TP/(TP+FN), F1, accuracy (TP+TN)/n, prevalence (TP+FN)/n and the
      discovery acceleration factor DAF = precision / prevalence. A missing prediction counts as
      predicted unstable (Matbench Discovery's ``fillna``);
    * uncertainty: the share of |error| within ±1σ and ±2σ, and the miscalibration area
      (:mod:`gnomon.models.calibration`).

Predicted e_above_hull (:func:`predicted_e_above_hull`)
    A model predicts energies per atom. The predicted distance to the hull of a structure is
    its predicted energy minus the hull energy at its composition, the hull built from the TRUE
    energies of the other entries (never from predictions). Because the hull energy at a
    composition does not depend on the structure being judged, this is
    ``e_above_hull_true + (E_pred - E_true)`` per atom, the convention of Matbench Discovery
    (``each_pred = each_true + e_form_pred - e_form_dft``).
    It isolates the model's error on the structure judged from errors on its neighbours.
    :func:`hull_distances` gives ``e_above_hull_true`` in the same sense: against the others,
    so a stable structure's value is negative (how far below its competitors it lies).

Learning curves (:func:`learning_curve`)
    Training is a callable, so any model (the gnomon ensemble, a peer) plugs in;
    :func:`learning_curve` never calls training code itself. :func:`trainer_fit_predict` is that
    callable for gnomon's own ensemble, predicting relaxed and (optionally) unrelaxed inputs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pymatgen.core import Element

from gnomon.models.calibration import coverage, miscalibration_area
from gnomon.models.ensemble import TTA, Ensemble
from gnomon.models.screening import Featurizer
from gnomon.models.spec import ModelSpec, TrainConfig
from gnomon.models.training import Sample, Trainer, predict_graphs
from gnomon.storage import Entry
from gnomon.storage.chemsys import arity, canonical_chemsys

log = logging.getLogger(__name__)

STABILITY_THRESHOLD = 0.0
"""eV/atom above the hull at or below which a structure counts as stable (Matbench Discovery)."""


# -- splits ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SystemSplit:
    """Positions of items in training and test, and the chemical systems on each side.

    ``kind`` is ``chemsys`` (whole systems held out), ``random`` (items drawn at random: a
    system is usually on both sides, the in-distribution reference) or ``fixed`` (a given
    held-out list).
    """

    kind: str
    train: list[int]
    test: list[int]
    train_systems: list[str]
    test_systems: list[str]
    seed: int | None = None

    @property
    def leaks(self) -> set[str]:
        """Systems on both sides (empty for every split by system)."""
        return set(self.train_systems) & set(self.test_systems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "seed": self.seed, "n_train": len(self.train),
            "n_test": len(self.test), "train_systems": self.train_systems,
            "test_systems": self.test_systems,
        }


def _by_system(chemsys: Sequence[str]) -> tuple[list[str], dict[str, list[int]]]:
    names = [canonical_chemsys(c) for c in chemsys]
    index: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        index.setdefault(name, []).append(i)
    return names, index


def _split_from_systems(
    kind: str, names: Sequence[str], test: set[str], seed: int | None
) -> SystemSplit:
    train_idx = [i for i, n in enumerate(names) if n not in test]
    test_idx = [i for i, n in enumerate(names) if n in test]
    return SystemSplit(
        kind, train_idx, test_idx, sorted({names[i] for i in train_idx}),
        sorted({names[i] for i in test_idx}), seed,
    )


def _strata(systems: Sequence[str], rng: np.random.Generator, stratify: bool) -> list[list[str]]:
    """Systems grouped by arity (or one group), each group shuffled by ``rng``."""
    groups: dict[int, list[str]] = {}
    for s in sorted(systems):
        groups.setdefault(arity(s) if stratify else 0, []).append(s)
    out = []
    for key in sorted(groups):
        members = list(groups[key])
        rng.shuffle(members)
        out.append(members)
    return out


def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, not {test_fraction}")


def chemsys_split(
    chemsys: Sequence[str], test_fraction: float = 0.2, seed: int = 0, stratify: bool = True
) -> SystemSplit:
    """Hold out about ``test_fraction`` of the chemical systems, whole.

    ``chemsys`` names each item's system. With ``stratify`` every arity (unaries, binaries,
    ternaries, ...) gives its share of held-out systems, so a test set is not all binaries by
    chance; shares are rounded by largest remainder so the total is ``round(fraction · N)``
    (at least one system on each side).
    """
    _check_fraction(test_fraction)
    names, index = _by_system(chemsys)
    n = len(index)
    if n < 2:
        raise ValueError(f"a split by chemical system needs at least 2 systems, got {n}")
    n_test = min(max(int(round(test_fraction * n)), 1), n - 1)
    rng = np.random.default_rng(seed)
    strata = _strata(list(index), rng, stratify)
    quotas = [test_fraction * len(g) for g in strata]
    take = [int(math.floor(q)) for q in quotas]  # sums to at most floor(fraction · N) <= n_test
    remainders = sorted(range(len(strata)), key=lambda k: (-(quotas[k] - take[k]), k))
    k = 0
    while sum(take) < n_test:
        j = remainders[k % len(strata)]
        if take[j] < len(strata[j]):
            take[j] += 1
        k += 1
    test = {s for g, t in zip(strata, take, strict=True) for s in g[:t]}
    return _split_from_systems("chemsys", names, test, seed)


def chemsys_kfold(
    chemsys: Sequence[str], k: int = 5, seed: int = 0, stratify: bool = True
) -> list[SystemSplit]:
    """``k`` splits whose test sets are disjoint sets of whole systems covering every system.

    Systems are dealt to folds in turn, arity by arity, so each fold gets its share of every
    arity and fold sizes differ by at most one system.
    """
    names, index = _by_system(chemsys)
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    if len(index) < k:
        raise ValueError(f"{k} folds need at least {k} chemical systems, got {len(index)}")
    rng = np.random.default_rng(seed)
    order = [s for group in _strata(list(index), rng, stratify) for s in group]
    folds: list[set[str]] = [set() for _ in range(k)]
    for i, s in enumerate(order):
        folds[i % k].add(s)
    return [_split_from_systems("chemsys", names, f, seed) for f in folds]


def held_out_split(chemsys: Sequence[str], held_out: Iterable[str]) -> SystemSplit:
    """Items of the systems in ``held_out`` (a fixed list, e.g. the benchmark world's) are the
    test set; everything else trains. Systems in the list but not in the data are ignored."""
    names, _ = _by_system(chemsys)
    test = {canonical_chemsys(s) for s in held_out}
    split = _split_from_systems("fixed", names, test, None)
    if not split.test or not split.train:
        raise ValueError(
            f"the held-out list leaves {len(split.train)} training and {len(split.test)} test items"
        )
    return split


def random_split(chemsys: Sequence[str], test_fraction: float = 0.2, seed: int = 0) -> SystemSplit:
    """Items drawn at random, regardless of system: the in-distribution reference."""
    _check_fraction(test_fraction)
    names, _ = _by_system(chemsys)
    n = len(names)
    if n < 2:
        raise ValueError(f"a split needs at least 2 items, got {n}")
    n_test = min(max(int(round(test_fraction * n)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    test_idx = sorted(int(i) for i in perm[:n_test])
    test_set = set(test_idx)
    train_idx = [i for i in range(n) if i not in test_set]
    return SystemSplit(
        "random", train_idx, test_idx, sorted({names[i] for i in train_idx}),
        sorted({names[i] for i in test_idx}), seed,
    )


# -- metrics --------------------------------------------------------------------------------
def _arrays(*values: Any) -> list[np.ndarray]:
    arrays = [np.asarray(v, dtype=float).ravel() for v in values]
    if len({a.size for a in arrays}) > 1:
        raise ValueError(f"arrays differ in length: {[a.size for a in arrays]}")
    return arrays


def energy_metrics(true: Sequence[float], pred: Sequence[float]) -> dict[str, float]:
    """MAE, RMSE and R² of ``pred`` against ``true`` over the pairs where both are finite.

    R² is 1 - Σ(pred - true)² / Σ(true - mean(true))² (NaN for fewer than 2 points or no spread).
    """
    t, p = _arrays(true, pred)
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    nan = float("nan")
    if t.size == 0:
        return {"n": 0, "mae": nan, "rmse": nan, "r2": nan}
    err = p - t
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / ss_tot if t.size > 1 and ss_tot > 0 else nan
    return {"n": int(t.size), "mae": float(np.mean(np.abs(err))),
            "rmse": float(np.sqrt(np.mean(err**2))), "r2": r2}


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def stability_metrics(
    e_above_hull_true: Sequence[float],
    e_above_hull_pred: Sequence[float],
    threshold: float = STABILITY_THRESHOLD,
) -> dict[str, float]:
    """Matbench Discovery's classification of stability (its ``stable_metrics``).

    Truly stable: ``true <= threshold``; predicted stable: ``pred <= threshold``. A missing
    (NaN) prediction counts as predicted unstable; items without a true value are left out.
    Precision TP/(TP+FP), recall TP/(TP+FN), F1 their harmonic mean, accuracy (TP+TN)/n,
    prevalence (TP+FN)/n, DAF precision/prevalence: how many times more stable structures a
    model's picks hold than picks at random from the same set. Undefined ratios are NaN.
    """
    t, p = _arrays(e_above_hull_true, e_above_hull_pred)
    keep = np.isfinite(t)
    t, p = t[keep], p[keep]
    actual = t <= threshold
    predicted = np.isfinite(p) & (p <= threshold)
    tp = int(np.sum(actual & predicted))
    fn = int(np.sum(actual & ~predicted))
    fp = int(np.sum(~actual & predicted))
    tn = int(np.sum(~actual & ~predicted))
    n = tp + fn + fp + tn
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    prevalence = _ratio(tp + fn, n)
    f1 = (2 * precision * recall / (precision + recall)
          if np.isfinite(precision) and np.isfinite(recall) and precision + recall > 0
          else float("nan"))
    return {
        "n_stability": n, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "precision": precision, "recall": recall, "f1": f1, "accuracy": _ratio(tp + tn, n),
        "prevalence": prevalence,
        "daf": (precision / prevalence if np.isfinite(precision) and prevalence > 0
                else float("nan")),
    }


def uncertainty_metrics(true: Sequence[float], pred: Sequence[float],
                        sigma: Sequence[float]) -> dict[str, float]:
    """±1σ and ±2σ coverage and miscalibration area over the finite (true, pred, σ) triples."""
    t, p, s = _arrays(true, pred, sigma)
    ok = np.isfinite(t) & np.isfinite(p) & np.isfinite(s)
    err, s = p[ok] - t[ok], s[ok]
    return {
        "coverage_1sigma": coverage(err, s, 1.0),
        "coverage_2sigma": coverage(err, s, 2.0),
        "miscalibration_area": miscalibration_area(err, s),
        "mean_sigma": float(np.mean(s)) if s.size else float("nan"),
    }


def predicted_e_above_hull(
    e_above_hull_true: Sequence[float], energy_true: Sequence[float], energy_pred: Sequence[float]
) -> np.ndarray:
    """``e_above_hull_true + (E_pred - E_true)`` per atom: the predicted energy measured against
    the hull of the true reference energies (Matbench Discovery's convention; see the module)."""
    h, t, p = _arrays(e_above_hull_true, energy_true, energy_pred)
    return h + (p - t)


def evaluation_report(
    energy_true: Sequence[float],
    energy_pred: Sequence[float],
    e_above_hull_true: Sequence[float] | None = None,
    sigma: Sequence[float] | None = None,
    threshold: float = STABILITY_THRESHOLD,
) -> dict[str, float]:
    """Every metric of one prediction set as one flat dict (a table row).

    ``n`` counts the items, ``n_missing`` those without a prediction (NaN: a structure the
    model refused); energy and uncertainty metrics use the predicted ones, stability metrics
    count a missing prediction as predicted unstable. Stability metrics need
    ``e_above_hull_true`` (:func:`hull_distances`), uncertainty metrics ``sigma``.
    """
    t, p = _arrays(energy_true, energy_pred)
    report: dict[str, float] = {"n": int(t.size), "n_missing": int(np.sum(~np.isfinite(p)))}
    energy = energy_metrics(t, p)
    report.update(mae=energy["mae"], rmse=energy["rmse"], r2=energy["r2"])
    if e_above_hull_true is not None:
        h = _arrays(e_above_hull_true, t)[0]
        report.update(stability_metrics(h, predicted_e_above_hull(h, t, p), threshold))
    # without σ the uncertainty columns are NaN, so rows of one table share their keys
    report.update(uncertainty_metrics(t, p, np.full(t.size, np.nan) if sigma is None else sigma))
    return report


# -- learning curves ------------------------------------------------------------------------
@dataclass
class Predictions:
    """A model's energies per atom for a list of items (NaN where it refused one) and its σ."""

    energy_per_atom: np.ndarray
    sigma: np.ndarray | None = None


FitPredict = Callable[[np.ndarray, np.ndarray], "Predictions | Mapping[str, Predictions]"]
"""``fit_predict(train_idx, test_idx)`` trains a model on the items at ``train_idx`` and returns
its predictions for the items at ``test_idx``, in that order; or several prediction sets by
name (e.g. ``{"relaxed": ..., "unrelaxed": ...}`` for what screening really sees)."""


@dataclass
class LearningCurve:
    """Metrics per training size, and the log-log fit MAE ≈ a · n_systems^slope per input."""

    rows: list[dict[str, Any]]
    slopes: dict[str, float] = field(default_factory=dict)
    intercepts: dict[str, float] = field(default_factory=dict)

    @property
    def slope(self) -> float:
        """The slope of the first (or only) prediction set."""
        return next(iter(self.slopes.values()), float("nan"))

    def table(self) -> list[dict[str, Any]]:
        """Rows ready for a table: one per training size and input."""
        return [dict(r) for r in self.rows]


def log_spaced_sizes(n_max: int, n_sizes: int = 5, n_min: int = 2) -> list[int]:
    """At least ``n_sizes`` distinct integers from ``n_min`` to ``n_max``, spaced evenly in log,
    the last one ``n_max`` (fewer only when there are not that many integers in the range)."""
    if n_max < 1:
        raise ValueError("a learning curve needs at least one training system")
    n_min = max(1, min(n_min, n_max))
    want = min(n_sizes, n_max - n_min + 1)
    count = want
    while True:
        sizes = sorted({int(round(x)) for x in np.geomspace(n_min, n_max, count)})
        if len(sizes) >= want:
            return sizes
        count += 1


def loglog_slope(sizes: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of log(value) = intercept + slope · log(size) over positive finite
    points (``numpy.polyfit`` on the logs); NaN with fewer than two such points."""
    x, y = _arrays(sizes, values)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if np.sum(ok) < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(intercept)


def learning_curve(
    chemsys: Sequence[str],
    energy_true: Sequence[float],
    split: SystemSplit,
    fit_predict: FitPredict,
    *,
    e_above_hull_true: Sequence[float] | None = None,
    sizes: Sequence[int] | None = None,
    n_sizes: int = 5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> LearningCurve:
    """Train on growing sets of training systems and score each model on ``split.test``.

    Sizes count the training systems of compounds (default: :func:`log_spaced_sizes` up to
    all of them). Elemental systems are in every training set and not counted: a campaign
    always holds its elemental references, and a set cut down to a few elements would hold
    one structure each, too few to train on. The subsets are nested: a seeded order of the
    compound systems is cut at each size, so a larger set holds every smaller one and the
    curve does not jump with which systems were drawn. The test set is the same for every
    size. ``progress(k, n_sizes)`` is called after each size.
    """
    names = [canonical_chemsys(c) for c in chemsys]
    energy = _arrays(energy_true)[0]
    hull = None if e_above_hull_true is None else _arrays(e_above_hull_true, energy)[0]
    elements = {s for s in split.train_systems if "-" not in s}
    order = [s for s in split.train_systems if s not in elements]
    np.random.default_rng(seed).shuffle(order)
    sizes = sorted(set(sizes)) if sizes is not None else log_spaced_sizes(len(order), n_sizes)
    if sizes[-1] > len(order):
        raise ValueError(
            f"largest size {sizes[-1]} exceeds the {len(order)} training systems of compounds")
    test_idx = np.asarray(split.test, dtype=int)
    rows: list[dict[str, Any]] = []
    for k, size in enumerate(sizes):
        chosen = elements | set(order[:size])
        train_idx = np.asarray([i for i in split.train if names[i] in chosen], int)
        result = fit_predict(train_idx, test_idx)
        sets = result if isinstance(result, Mapping) else {"relaxed": result}
        for label, pred in sets.items():
            row: dict[str, Any] = {"input": label, "n_systems": size, "n_train": len(train_idx)}
            row.update(evaluation_report(
                energy[test_idx], pred.energy_per_atom,
                None if hull is None else hull[test_idx], pred.sigma,
            ))
            rows.append(row)
        log.info("learning curve: %d systems (%d items) done", size, len(train_idx))
        if progress is not None:
            progress(k + 1, len(sizes))
    curve = LearningCurve(rows)
    for label in dict.fromkeys(r["input"] for r in rows):
        mine = [r for r in rows if r["input"] == label]
        slope, intercept = loglog_slope([r["n_systems"] for r in mine], [r["mae"] for r in mine])
        curve.slopes[label], curve.intercepts[label] = slope, intercept
    return curve


# -- models on stored data ------------------------------------------------------------------
def predict_samples(
    ensemble: Ensemble, samples: Sequence[Sample], tta: TTA | None = None, batch_size: int = 256
) -> Predictions:
    """The ensemble's calibrated mean and σ for each sample, NaN where it refuses one (an
    element it never saw, a structure it cannot make a graph of)."""
    featurizer = Featurizer.for_ensemble(ensemble, tta)
    graphs, kept, _ = Trainer().featurize(samples, featurizer)
    energy = np.full(len(samples), np.nan)
    sigma = np.full(len(samples), np.nan)
    if graphs:
        out = predict_graphs(ensemble, graphs, featurizer, batch_size, tta)
        where = {s.key: i for i, s in enumerate(samples)}
        rows = [where[s.key] for s in kept]
        energy[rows], sigma[rows] = out.mean, out.sigma
    return Predictions(energy, sigma)


def trainer_fit_predict(
    samples: Sequence[Sample],
    spec: Any = None,
    config: Any = None,
    *,
    inputs: Mapping[str, Sequence[Sample]] | None = None,
    tta: TTA | None = None,
) -> FitPredict:
    """A :data:`FitPredict` that trains gnomon's ensemble (:class:`~gnomon.models.training.Trainer`
    with ``spec`` and ``config``) on ``samples[train_idx]`` and predicts ``samples[test_idx]``.

    ``inputs`` names other versions of the same samples to predict as well, position for
    position: ``{"unrelaxed": [...]}`` holds the unrelaxed structures labelled with the relaxed
    energies, which is what screening really sees. The trainer validates on part of the
    training items only, so nothing of the test side reaches training or calibration.
    """
    for name, other in (inputs or {}).items():
        if len(other) != len(samples):
            raise ValueError(f"input {name!r} has {len(other)} samples, not {len(samples)}")

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> dict[str, Predictions]:
        ensemble = Trainer(spec, config).fit([samples[i] for i in train_idx]).ensemble
        out = {"relaxed": predict_samples(ensemble, [samples[i] for i in test_idx], tta)}
        for name, other in (inputs or {}).items():
            out[name] = predict_samples(ensemble, [other[i] for i in test_idx], tta)
        return out

    return fit_predict


def hull_distances(
    entries: Sequence[Entry], reference: Sequence[Entry] | None = None, tol: float = 1e-8
) -> np.ndarray:
    """Each entry's true energy per atom minus the hull energy at its composition, the hull
    built from the true energies of the OTHER entries of ``reference`` (default: ``entries``).

    This is the ``e_above_hull_true`` of Matbench Discovery's convention (see the module): for
    an entry above the hull it is its e_above_hull (taking it away does not move the hull); for
    an entry on the hull it is negative, how far below its competitors it lies, so that
    ``e_above_hull_true + (E_pred - E_true)`` is exactly its predicted energy against the hull
    of the others. Polymorphs of the same formula are competitors too (pymatgen's decomposition
    energy leaves them out and would call an unstable polymorph of a stable formula stable).
    The sole elemental reference of an element is 0 by definition. NaN where an element of the
    entry's system has no reference entry at all.
    """
    from pymatgen.analysis.phase_diagram import PhaseDiagram  # heavy: pymatgen.analysis
    from pymatgen.entries.computed_entries import ComputedEntry  # heavy: pymatgen.entries

    reference = list(entries if reference is None else reference)
    computed = {e.id: ComputedEntry(e.composition, e.energy, entry_id=e.id) for e in reference}
    for e in entries:
        computed.setdefault(e.id, ComputedEntry(e.composition, e.energy, entry_id=e.id))
    pool_ids = [e.id for e in reference]
    elements_of = {e.id: set(e.elements) for e in [*reference, *entries]}
    out = np.full(len(entries), np.nan)
    by_system: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        by_system.setdefault(canonical_chemsys(e.chemsys), []).append(i)
    for system, rows in by_system.items():
        els = set(system.split("-"))
        pool = [computed[k] for k in pool_ids if elements_of[k] <= els]
        terminals = {str(c.composition.elements[0]) for c in pool if c.composition.is_element}
        if not els <= terminals:
            continue
        elements = [Element(el) for el in sorted(els)]
        pd = PhaseDiagram(pool, elements=elements)
        for i in rows:
            entry = computed[entries[i].id]
            above = pd.get_e_above_hull(entry, allow_negative=True)
            if above is not None and above > tol:
                out[i] = above
                continue
            others = [c for c in pool if c.entry_id != entry.entry_id]
            refs = {str(c.composition.elements[0]) for c in others if c.composition.is_element}
            if not els <= refs:
                out[i] = 0.0  # the only reference of an element: 0 by definition
                continue
            diagram = PhaseDiagram(others, elements=elements)
            hull = diagram.get_hull_energy_per_atom(entry.composition)
            out[i] = entry.energy_per_atom - hull
    return out


MIN_ENTRIES = 10
"""Fewest entries a stored data set needs before its metrics mean anything."""
MIN_SYSTEMS = 3
"""Fewest chemical systems a split by system needs: one held out, and two to train on (the
trainer validates on a system of its own)."""

SET_LABELS = {
    "in_distribution": "in-distribution",
    "out_of_distribution": "held-out systems",
    "training": "training entries",
}


class NotEnoughData(ValueError):
    """The stored data are too few for the evaluation asked for; the message says what lacks."""


def check_enough(entries: Sequence[Entry], scheme: str, need_systems: bool) -> None:
    """Raise :class:`NotEnoughData` naming the count that falls short."""
    systems = {canonical_chemsys(e.chemsys) for e in entries}
    if len(entries) < MIN_ENTRIES:
        raise NotEnoughData(
            f"the database holds {len(entries)} entries of scheme {scheme!r}; evaluating a model "
            f"needs at least {MIN_ENTRIES}"
        )
    if need_systems and len(systems) < MIN_SYSTEMS:
        raise NotEnoughData(
            f"the entries of scheme {scheme!r} span {len(systems)} chemical system(s) "
            f"({', '.join(sorted(systems))}); a split by chemical system needs at least "
            f"{MIN_SYSTEMS}: one held out, two to train and validate on"
        )


def _report(entries: Sequence[Entry], idx: Sequence[int], pred: Predictions,
            hull: np.ndarray) -> dict[str, Any]:
    idx = list(idx)
    energy = np.array([entries[i].energy_per_atom for i in idx], float)
    report: dict[str, Any] = evaluation_report(energy, pred.energy_per_atom, hull[idx], pred.sigma)
    report["n_systems"] = len({canonical_chemsys(entries[i].chemsys) for i in idx})
    return report


def evaluate_version(
    record: Any,
    ensemble: Ensemble,
    entries: Sequence[Entry],
    training_keys: set[str],
    *,
    reference: Sequence[Entry] | None = None,
    include_training: bool = False,
    tta: TTA | None = None,
) -> dict[str, Any]:
    """A registered version on stored entries, reported per set.

    ``in_distribution``: entries it was not trained on, of systems its training data held;
    ``out_of_distribution``: entries of systems its training data did not hold at all;
    ``training`` (with ``include_training``): the entries it was fitted on. Without a recorded
    training split every entry lands in ``out_of_distribution`` and ``split_known`` is False.
    ``reference`` holds the entries the true hull is built from (default: ``entries``; give
    every entry of the scheme when ``entries`` is a selection).
    """
    if not entries:
        raise NotEnoughData(f"the database holds no entries of scheme {record.scheme!r}")
    trained_systems = {canonical_chemsys(e.chemsys) for e in entries if e.id in training_keys}
    trained_systems |= {canonical_chemsys(s) for s in record.config.get("train_systems", [])}
    parts: dict[str, list[int]] = {"in_distribution": [], "out_of_distribution": [], "training": []}
    for i, e in enumerate(entries):
        if e.id in training_keys:
            parts["training"].append(i)
        elif canonical_chemsys(e.chemsys) in trained_systems:
            parts["in_distribution"].append(i)
        else:
            parts["out_of_distribution"].append(i)
    if not include_training:
        parts.pop("training")
    wanted = sorted({i for idx in parts.values() for i in idx})
    pred = predict_samples(ensemble, [Sample.from_entry(entries[i]) for i in wanted], tta)
    where = {i: k for k, i in enumerate(wanted)}
    hull = np.full(len(entries), np.nan)
    hull[wanted] = hull_distances([entries[i] for i in wanted], reference or entries)
    sets: dict[str, Any] = {}
    for name, idx in parts.items():
        if not idx:
            continue
        rows = [where[i] for i in idx]
        sigma = None if pred.sigma is None else pred.sigma[rows]
        sub = Predictions(pred.energy_per_atom[rows], sigma)
        sets[name] = _report(entries, idx, sub, hull)
    return {
        "scheme": record.scheme, "model": record.id, "mode": "registered",
        "split_known": bool(training_keys) or bool(record.config.get("train_systems")),
        "n_entries": len(entries), "sets": sets,
    }


def evaluate_fresh(
    scheme: str,
    entries: Sequence[Entry],
    *,
    reference: Sequence[Entry] | None = None,
    splits: Sequence[str] = ("random", "chemsys"),
    test_fraction: float = 0.2,
    seed: int = 0,
    spec: Any = None,
    config: Any = None,
    tta: TTA | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a fresh ensemble per split on its training side and score it on the test side.

    ``random`` (in-distribution) draws entries at random; ``chemsys`` (held-out systems) holds
    out whole systems, stratified by arity. The trainer validates (early stopping, σ
    calibration) on part of the training side only: by formula for the random split, by system
    for the split by system, so its σ is calibrated on the kind of novelty it is judged on.
    """
    for s in splits:
        if s not in ("random", "chemsys"):
            raise ValueError(f"split must be 'random' or 'chemsys', not {s!r}")
    check_enough(entries, scheme, need_systems="chemsys" in splits)
    spec = spec or ModelSpec()
    config = config or TrainConfig(ensemble_size=3, max_epochs=100, patience=15,
                                   checkpoint_dir=None)
    chemsys = [e.chemsys for e in entries]
    samples = [Sample.from_entry(e) for e in entries]
    hull = np.full(len(entries), np.nan)
    sets: dict[str, Any] = {}
    for kind in splits:
        split = (chemsys_split(chemsys, test_fraction, seed) if kind == "chemsys"
                 else random_split(chemsys, test_fraction, seed))
        if progress is not None:
            progress(f"training on the {kind} split")
        cfg = replace(config, seed=seed, test_fraction=0.0,
                      group_by="chemsys" if kind == "chemsys" else "composition")
        result = Trainer(spec, cfg).fit([samples[i] for i in split.train])
        pred = predict_samples(result.ensemble, [samples[i] for i in split.test], tta)
        hull[split.test] = hull_distances([entries[i] for i in split.test], reference or entries)
        report = _report(entries, split.test, pred, hull)
        report.update(split=kind, n_train=len(split.train),
                      n_train_systems=len(split.train_systems), test_systems=split.test_systems,
                      sigma_scale=result.ensemble.sigma_scale)
        sets["in_distribution" if kind == "random" else "out_of_distribution"] = report
    return {
        "scheme": scheme, "model": None, "mode": "fresh", "n_entries": len(entries),
        "test_fraction": test_fraction, "seed": seed, "sets": sets,
    }
