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
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from gnomon.campaign.selection import Scored, make_policy
from gnomon.pipeline.thermo.hull import phase_diagram
from gnomon.pipeline.thermo.hull_geometry import HullGeometry
from gnomon.pipeline.thermo.importing import read_files

if TYPE_CHECKING:
    from gnomon.models.ensemble import Ensemble

log = logging.getLogger(__name__)

HIT_TOLERANCE = 1e-8  # eV/atom: "e_above_hull <= 0" up to the hull's floating-point noise


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
    model_guided: list[bool] = field(default_factory=list)  # per round: ranked by a model's predictions
    picked: list[list[str]] = field(default_factory=list)  # per round: keys revealed, in pick order

    @property
    def per_100(self) -> float:
        return 100.0 * self.stable_found[-1] / max(self.evaluations[-1], 1) if self.evaluations else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "start": self.start, "evaluations": self.evaluations,
                "stable_found": self.stable_found, "hit_rate": self.hits,
                "n_stable_total": self.n_stable_total, "stable_per_100": self.per_100,
                "model_guided": self.model_guided, "picked": self.picked}


def load_labels(path: Path, scheme: str = "labels") -> list[Labelled]:
    """Labelled structures from any file ``gnomon db import`` reads (entries need structures)."""
    result = read_files([Path(path)], scheme)
    if result.rejected:
        raise ValueError(f"{path}: {len(result.rejected)} invalid records, first: {result.rejected[0]}")
    out = []
    for e in result.entries:
        if e.structure is None:
            raise ValueError(f"{path}: record {e.source or e.id} has no structure; simulation needs structures")
        out.append(Labelled(e.id, Structure.from_dict(e.structure), e.energy_per_atom, e.reduced_formula, e.chemsys))
    return out


def _entries(items: Sequence[Labelled]) -> list[ComputedEntry]:
    return [ComputedEntry(it.structure.composition, it.energy_per_atom * len(it.structure), entry_id=it.key)
            for it in items]


def true_stable(labels: Sequence[Labelled]) -> set[str]:
    """Keys of the labelled structures on the hull of the whole set."""
    pd = PhaseDiagram(_entries(labels))
    return {e.entry_id for e in pd.stable_entries if not e.composition.is_element}


def e_above_known(known: Sequence[Labelled], items: Sequence[Labelled], energies: Sequence[float]) -> list[float | None]:
    """e_above_hull of hypothetical energies against the hull of ``known``, per chemsys."""
    out: list[float | None] = [None] * len(items)
    by_sys: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_sys.setdefault(it.chemsys, []).append(i)
    pool = _entries(known)
    for chemsys, idx in by_sys.items():
        els = set(chemsys.split("-"))
        pd = phase_diagram([e for e in pool if {str(x) for x in e.composition.elements} <= els], chemsys)
        if pd is None:
            continue
        geo = HullGeometry(pd)
        hull, facets, _ = geo.hull_energies(geo.coords([Composition(items[i].structure.composition) for i in idx]))
        for j, i in enumerate(idx):
            if facets[j] >= 0:
                out[i] = float(energies[i] - hull[j])
    return out


def hit_rate(known: Sequence[Labelled], picked: Sequence[Labelled]) -> float | None:
    """Share of ``picked`` with e_above_hull <= 0 against the hull of ``known`` (the hull
    before the round: picks of the same round do not judge each other). None when no pick
    could be judged (a hull without an element's reference)."""
    judged = [v for v in e_above_known(known, picked, [it.energy_per_atom for it in picked]) if v is not None]
    return sum(v <= HIT_TOLERANCE for v in judged) / len(judged) if judged else None


def _load_model(model: Ensemble | str | Path | None) -> Ensemble | None:
    if model is None:
        return None
    from gnomon.models.ensemble import Ensemble

    return model if isinstance(model, Ensemble) else Ensemble.load(model)


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
    max_epochs, patience.
    """
    from gnomon.models.ensemble import ModelSpec
    from gnomon.models.screening import Screener
    from gnomon.models.training import Sample, TrainConfig, Trainer

    rng = random.Random(seed)
    elements = [it for it in labels if len(it.structure.composition) == 1]
    compounds = [it for it in labels if len(it.structure.composition) > 1]
    stable = set(true_stable([*labels, *reference]) if stable is None else stable) & {it.key for it in compounds}
    order = compounds[:]
    rng.shuffle(order)
    known = [*reference, *elements, *order[:initial]]
    pool = {it.key: it for it in order[initial:]}
    model = _load_model(initial_model)
    result = SimulationResult(policy, n_stable_total=len(stable), start="scratch" if model is None else "model")
    evaluated: set[str] = set()
    mopts = dict(model_options or {})
    spec = ModelSpec(hidden=mopts.pop("hidden", 32), num_layers=mopts.pop("layers", 2))
    ensemble_size = mopts.get("ensemble_size", model.size if model is not None else 5)
    for r in range(rounds):
        if not pool:
            break
        candidates = list(pool.values())
        guided = policy != "random" and (model is not None or initial > 0 or r > 0)
        if guided and (r > 0 or model is None):
            # a fresh ensemble when starting from scratch; otherwise the previous round's,
            # fine-tuned on everything known now under its own normalisation (a child keeps
            # its parent's references, shift and scale, as a campaign's fine-tuning does)
            config = TrainConfig(ensemble_size=ensemble_size, seed=seed + r, max_epochs=mopts.get("max_epochs", 150),
                                 patience=mopts.get("patience", 20), threads=1)
            parent = model if result.start == "model" else None
            samples = [Sample.from_structure(it.key, it.structure, it.energy_per_atom) for it in known]
            model = Trainer(spec, config).fit(samples, parent=parent,
                                              normalization=parent.normalization if parent else None).ensemble
        if guided:
            preds = Screener(model).predict([it.candidate for it in candidates])
            means = [p.energy_per_atom if p.energy_per_atom is not None else np.inf for p in preds]
            e_hull = e_above_known(known, candidates, means)
            scored = [Scored(it.key, e if np.isfinite(means[i]) else None, preds[i].sigma or 0.0, it.reduced_formula)
                      for i, (it, e) in enumerate(zip(candidates, e_hull, strict=True))]
            chooser = make_policy(policy, budget=budget, seed=seed, **(policy_options or {}))
        else:
            # nothing to rank by: a uniform draw (the same draw the random policy makes)
            scored = [Scored(it.key, None, 0.0, it.reduced_formula) for it in candidates]
            per_group = (policy_options or {}).get("max_per_group")
            chooser = make_policy("random", budget=budget, seed=seed, max_per_group=per_group)
        chosen = chooser.select(scored, round_index=r)
        picked = [pool.pop(c.candidate_id) for c in chosen]
        result.hits.append(hit_rate(known, picked))
        known.extend(picked)
        evaluated.update(it.key for it in picked)
        result.picked.append([it.key for it in picked])
        result.model_guided.append(guided)
        result.evaluations.append(len(evaluated))
        result.stable_found.append(len(evaluated & stable))
        log.info("simulate %s (%s) round %d: %d evaluated, hit rate %s, %d stable found", policy, result.start, r,
                 result.evaluations[-1], result.hits[-1], result.stable_found[-1])
    return result
