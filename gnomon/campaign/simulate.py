"""Simulation mode: replay the active-learning loop against a labelled set.

Every candidate's energy is already known, so no engine runs: a round trains the ensemble
on what has been "relaxed" so far, screens the rest, lets a selection policy pick a budget,
and reveals the picked labels. Comparing policies this way costs minutes instead of a
cluster allocation.

What a round sees is what a campaign would see: the screen reads each candidate's
*unrelaxed* input (``Labelled.unrelaxed``), the oracle reveals the *relaxed* structure and
its energy, and training uses the relaxed pairs. The campaign starts either from an initial
ensemble (round 0 is screened by it; each later round fine-tunes the previous round's
ensemble) or from scratch (a fresh ensemble each round; while the campaign has revealed
nothing of its own, round 0 is a random draw, as in a real campaign before any model).

Two figures, as GNoME counts them:

* **hit rate** of a round: the share of its picks with e_above_hull <= 0 against the hull of
  everything known *before* the round (the reference entries the campaign starts with,
  the labelled elements, the ``initial`` compounds and every earlier round's picks);
* **stable found per 100 oracle calls**: picks on the hull of the whole labelled world
  (``stable``), per 100 picks.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from gnomon.campaign.selection import Scored, SelectionPolicy, make_policy
from gnomon.models.ensemble import Ensemble
from gnomon.models.screening import Screener
from gnomon.models.spec import ModelSpec, TrainConfig
from gnomon.models.training import Sample, Trainer
from gnomon.pipeline.thermo.hull import phase_diagram
from gnomon.pipeline.thermo.hull_geometry import HullGeometry
from gnomon.pipeline.thermo.importing import read_files

log = logging.getLogger(__name__)

HIT_TOLERANCE = 1e-8  # eV/atom: "e_above_hull <= 0" up to the hull's floating-point noise

#: A stage between the screen and the oracle (an mlip stage, or the oracle's own ranking for a
#: ceiling): given what is known before the round, the round's candidates, their screen scores
#: (None when no model ranked them) and the round, the scores it hands on to the policy; a
#: candidate it leaves out is not picked this round.
Stage = Callable[[Sequence["Labelled"], Sequence["Labelled"], "list[Scored] | None", int],
                 "list[Scored]"]


@dataclass
class Labelled:
    """One labelled structure: the relaxed result and, when known, the input it came from."""

    key: str
    structure: Structure  # relaxed: what the oracle reveals and training sees
    energy_per_atom: float
    reduced_formula: str
    chemsys: str
    unrelaxed: Structure | None = None  # the candidate as generated: what the screen sees

    @property
    def candidate(self) -> Structure:
        return self.unrelaxed if self.unrelaxed is not None else self.structure


@dataclass
class SimulationResult:
    policy: str
    evaluations: list[int] = field(default_factory=list)  # cumulative, per round
    stable_found: list[int] = field(default_factory=list)  # cumulative, per round
    hits: list[float | None] = field(default_factory=list)  # per-round hit rate vs previous hull
    n_stable_total: int = 0
    start: str = "scratch"  # or "model": an initial ensemble screened round 0
    model_guided: list[bool] = field(
        default_factory=list
    )  # per round: ranked by a model's predictions
    picked: list[list[str]] = field(default_factory=list)  # per round: keys revealed, in pick order
    # per round: MAE (eV/atom) of the screen's prediction for the round's picks against what the
    # oracle then revealed, the figure that says whether a screen that keeps learning improves
    # on the chemistry it is now seeing (None: no model screened the round)
    round_mae: list[float | None] = field(default_factory=list)

    @property
    def per_100(self) -> float:
        return (
            100.0 * self.stable_found[-1] / max(self.evaluations[-1], 1)
            if self.evaluations
            else 0.0
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "start": self.start,
            "evaluations": self.evaluations,
            "stable_found": self.stable_found,
            "hit_rate": self.hits,
            "n_stable_total": self.n_stable_total,
            "stable_per_100": self.per_100,
            "model_guided": self.model_guided,
            "picked": self.picked,
            "round_mae": self.round_mae,
        }


def load_labels(path: Path, scheme: str = "labels") -> list[Labelled]:
    """Labelled structures from any file ``gnomon db import`` reads (entries need structures)."""
    result = read_files([Path(path)], scheme)
    if result.rejected:
        raise ValueError(
            f"{path}: {len(result.rejected)} invalid records, first: {result.rejected[0]}"
        )
    out = []
    for e in result.entries:
        if e.structure is None:
            raise ValueError(
                f"{path}: record {e.source or e.id} has no structure; simulation needs structures"
            )
        out.append(
            Labelled(
                e.id,
                Structure.from_dict(e.structure),
                e.energy_per_atom,
                e.reduced_formula,
                e.chemsys,
            )
        )
    return out


def _entries(items: Sequence[Labelled]) -> list[ComputedEntry]:
    return [
        ComputedEntry(
            it.structure.composition, it.energy_per_atom * len(it.structure), entry_id=it.key
        )
        for it in items
    ]


def true_stable(labels: Sequence[Labelled]) -> set[str]:
    """Keys of the labelled structures on the hull of the whole set."""
    pd = PhaseDiagram(_entries(labels))
    return {e.entry_id for e in pd.stable_entries if not e.composition.is_element}


def e_above_known(
    known: Sequence[Labelled], items: Sequence[Labelled], energies: Sequence[float]
) -> list[float | None]:
    """e_above_hull of hypothetical energies against the hull of ``known``, per chemsys."""
    out: list[float | None] = [None] * len(items)
    by_sys: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_sys.setdefault(it.chemsys, []).append(i)
    pool = _entries(known)
    for chemsys, idx in by_sys.items():
        els = set(chemsys.split("-"))
        pd = phase_diagram(
            [e for e in pool if {str(x) for x in e.composition.elements} <= els], chemsys
        )
        if pd is None:
            continue
        geo = HullGeometry(pd)
        hull, facets, _ = geo.hull_energies(
            geo.coords([Composition(items[i].structure.composition) for i in idx])
        )
        for j, i in enumerate(idx):
            if facets[j] >= 0:
                out[i] = float(energies[i] - hull[j])
    return out


def hit_rate(known: Sequence[Labelled], picked: Sequence[Labelled]) -> float | None:
    """Share of ``picked`` with e_above_hull <= 0 against the hull of ``known`` (the hull
    before the round: picks of the same round do not judge each other). None when no pick
    could be judged (a hull without an element's reference)."""
    judged = [
        v
        for v in e_above_known(known, picked, [it.energy_per_atom for it in picked])
        if v is not None
    ]
    return sum(v <= HIT_TOLERANCE for v in judged) / len(judged) if judged else None


def _load_model(model: Ensemble | str | Path | None) -> Ensemble | None:
    if model is None:
        return None
    return model if isinstance(model, Ensemble) else Ensemble.load(model)


@dataclass
class _Retrainer:
    """How each round's ensemble is trained: fresh from scratch, or the previous round's
    fine-tuned on everything known now under its own normalisation (a child keeps its
    parent's references, shift and scale, as a campaign's fine-tuning does)."""

    spec: ModelSpec
    ensemble_size: int
    max_epochs: int
    patience: int
    seed: int
    fine_tune: bool
    frozen: bool = False  # the initial model screens every round, never retrained
    # "all": everything known, as a campaign's retraining learns from every entry of its
    # scheme; "revealed": the elements and the picks revealed so far only, leaving out the
    # reference entries the initial model was already trained on (cheap, for long replays)
    train_on: str = "all"

    def train(self, known: Sequence[Labelled], model: Ensemble | None, r: int,
              reference: Collection[str] = ()) -> Ensemble:
        config = TrainConfig(
            ensemble_size=self.ensemble_size,
            seed=self.seed + r,
            max_epochs=self.max_epochs,
            patience=self.patience,
            threads=1,
        )
        parent = model if self.fine_tune else None
        if self.train_on == "revealed":
            known = [it for it in known if it.key not in reference]
        samples = training_samples(known)
        return (
            Trainer(self.spec, config)
            .fit(
                samples,
                parent=parent,
                normalization=parent.normalization if parent else None,
            )
            .ensemble
        )


def training_samples(known: Sequence[Labelled]) -> list[Sample]:
    """Each revealed structure, and the unrelaxed input it came from paired with the same
    relaxed energy: the screen judges unrelaxed inputs, so it keeps learning from them (the
    shipped model's recipe), not only from relaxed geometry."""
    samples = []
    for it in known:
        relaxed = Sample.from_structure(it.key, it.structure, it.energy_per_atom)
        samples.append(relaxed)
        if it.unrelaxed is not None:
            samples.append(relaxed.paired(it.unrelaxed.as_dict(), "unrelaxed"))
    return samples


def _retrainer(
    model: Ensemble | None, model_options: dict[str, Any] | None, seed: int
) -> _Retrainer:
    """The retrainer ``model_options`` ask for (ensemble_size, hidden, layers, max_epochs,
    patience, frozen, train_on); an initial ``model`` is fine-tuned (unless frozen) and gives
    the default ensemble size."""
    mopts = dict(model_options or {})
    frozen = bool(mopts.pop("frozen", False)) and model is not None
    spec = ModelSpec(hidden=mopts.pop("hidden", 32), num_layers=mopts.pop("layers", 2))
    return _Retrainer(
        spec,
        mopts.get("ensemble_size", model.size if model is not None else 5),
        mopts.get("max_epochs", 150),
        mopts.get("patience", 20),
        seed,
        fine_tune=model is not None,
        frozen=frozen,
        train_on=mopts.get("train_on", "all"),
    )


def _ranked(
    model: Ensemble,
    known: Sequence[Labelled],
    candidates: Sequence[Labelled],
    policy: str,
    budget: int,
    seed: int,
    policy_options: dict[str, Any] | None,
    memo: dict[str, Any] | None = None,
    predicted: dict[str, float] | None = None,
) -> tuple[SelectionPolicy, list[Scored]]:
    """``policy`` and the candidates as ``model`` scores them against the hull of ``known``.
    ``memo`` (a frozen model's predictions by key) spares screening a candidate twice;
    ``predicted`` collects each candidate's predicted energy per atom."""
    if memo is None:
        preds = Screener(model).predict([it.candidate for it in candidates])
    else:
        new = [it for it in candidates if it.key not in memo]
        memo.update(zip([it.key for it in new],
                        Screener(model).predict([it.candidate for it in new]), strict=True))
        preds = [memo[it.key] for it in candidates]
    means = [p.energy_per_atom if p.energy_per_atom is not None else np.inf for p in preds]
    if predicted is not None:
        predicted.update((it.key, m) for it, m in zip(candidates, means, strict=True))
    e_hull = e_above_known(known, candidates, means)
    scored = [
        Scored(
            it.key, e if np.isfinite(means[i]) else None, preds[i].sigma or 0.0, it.reduced_formula
        )
        for i, (it, e) in enumerate(zip(candidates, e_hull, strict=True))
    ]
    return make_policy(policy, budget=budget, seed=seed, **(policy_options or {})), scored


def _uniform(
    candidates: Sequence[Labelled], budget: int, seed: int, policy_options: dict[str, Any] | None
) -> tuple[SelectionPolicy, list[Scored]]:
    """Nothing to rank by: a uniform draw (the same draw the random policy makes)."""
    scored = [Scored(it.key, None, 0.0, it.reduced_formula) for it in candidates]
    per_group = (policy_options or {}).get("max_per_group")
    return make_policy("random", budget=budget, seed=seed, max_per_group=per_group), scored


def _starting_point(labels: Sequence[Labelled], reference: Sequence[Labelled], initial: int,
                    seed: int, stable: Collection[str] | None
                    ) -> tuple[list[Labelled], dict[str, Labelled], set[str]]:
    """What is known before round 0 (the references, the elements and ``initial`` compounds
    drawn at random), the pool of candidates left, and the stable compounds among them."""
    rng = random.Random(seed)
    elements = [it for it in labels if len(it.structure.composition) == 1]
    compounds = [it for it in labels if len(it.structure.composition) > 1]
    on_hull = set(true_stable([*labels, *reference]) if stable is None else stable)
    order = compounds[:]
    rng.shuffle(order)
    known = [*reference, *elements, *order[:initial]]
    pool = {it.key: it for it in order[initial:]}
    return known, pool, on_hull & {it.key for it in compounds}


def _reveal(
    result: SimulationResult,
    known: list[Labelled],
    picked: list[Labelled],
    evaluated: set[str],
    stable: set[str],
    guided: bool,
    predicted: dict[str, float],
) -> None:
    """A round's picks revealed: judged against the hull before them (``known``), then known,
    and the round's figures recorded on ``result``."""
    result.hits.append(hit_rate(known, picked))
    known.extend(picked)
    evaluated.update(it.key for it in picked)
    result.picked.append([it.key for it in picked])
    errors = [abs(predicted[it.key] - it.energy_per_atom) for it in picked
              if np.isfinite(predicted.get(it.key, np.inf))]
    result.round_mae.append(float(np.mean(errors)) if guided and errors else None)
    result.model_guided.append(guided)
    result.evaluations.append(len(evaluated))
    result.stable_found.append(len(evaluated & stable))


def simulate(
    labels: Sequence[Labelled],
    policy: str,
    rounds: int = 5,
    budget: int = 20,
    initial: int = 20,
    seed: int = 0,
    policy_options: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
    *,
    reference: Sequence[Labelled] = (),
    initial_model: Ensemble | str | Path | None = None,
    stable: Collection[str] | None = None,
    stage: Stage | None = None,
    screen: bool = True,
) -> SimulationResult:
    """Run ``rounds`` rounds of train → screen → select → reveal with one policy.

    ``labels`` are the candidate pool (its compounds) and elemental references (its
    elements); ``initial`` compounds drawn at random are known before round 0.
    ``reference`` entries are known from the start too (for example the entries of the
    systems a pretrained model was trained on): they shape the hull and train the model, but
    are never candidates and never count as oracle calls. ``initial_model`` (an Ensemble or
    its file) screens round 0 and is fine-tuned every later round; without it each round
    trains a fresh ensemble, and round 0 is random when there is nothing to train on yet.
    ``stable`` are the keys on the hull of the whole labelled world (default: the hull of
    ``labels`` and ``reference``). ``model_options``: ensemble_size, hidden, layers,
    max_epochs, patience, ``frozen`` (the initial model screens every round unchanged) and
    ``train_on`` ("all", or "revealed": fine-tune on the elements and the picks only).
    Each round's ``round_mae`` is the screen's error on the round's picks: whether a screen
    that keeps learning does better round after round on the chemistry it now sees.
    ``stage`` (:data:`Stage`) re-scores what the screen ranked before the policy picks;
    ``screen=False`` runs no model at all (the stage alone ranks: a ceiling).
    """
    known, pool, stable = _starting_point(labels, reference, initial, seed, stable)
    model = _load_model(initial_model)
    result = SimulationResult(
        policy, n_stable_total=len(stable), start="scratch" if model is None else "model"
    )
    retrainer = _retrainer(model, model_options, seed)
    reference_keys = {it.key for it in reference}
    memo: dict[str, Any] | None = {} if retrainer.frozen else None
    evaluated: set[str] = set()
    for r in range(rounds):
        if not pool:
            break
        candidates = list(pool.values())
        guided = screen and policy != "random" and (model is not None or initial > 0 or r > 0)
        if guided and (r > 0 or model is None) and not retrainer.frozen:
            model = retrainer.train(known, model, r, reference_keys)
        predicted: dict[str, float] = {}
        chooser, scored = (
            _ranked(model, known, candidates, policy, budget, seed, policy_options, memo,
                    predicted)
            if guided
            else _uniform(candidates, budget, seed, policy_options)
        )
        if stage is not None:
            scored = stage(known, candidates, scored if guided else None, r)
            chooser = make_policy(policy, budget=budget, seed=seed, **(policy_options or {}))
        picked = [pool.pop(c.candidate_id) for c in chooser.select(scored, round_index=r)]
        _reveal(result, known, picked, evaluated, stable, guided, predicted)
        log.info("simulate %s (%s) round %d: %d evaluated, hit rate %s, %d stable found",
                 policy, result.start, r, result.evaluations[-1], result.hits[-1],
                 result.stable_found[-1])
    return result
