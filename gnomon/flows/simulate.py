"""Simulation mode: replay the active-learning loop against a labelled set.

Every candidate's energy is already known, so no engine runs: a round trains the ensemble
on what has been "relaxed" so far, screens the rest, lets a selection policy pick a budget,
and reveals the picked labels. Comparing policies this way costs minutes instead of a
cluster allocation. The count that matters is GNoME's: stable phases (on the hull of the
whole labelled set) found per evaluation.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from gnomon.pipeline.selection import Scored, make_policy
from gnomon.pipeline.thermo.hull import phase_diagram
from gnomon.pipeline.thermo.hull_geometry import HullGeometry
from gnomon.pipeline.thermo.importing import read_files

log = logging.getLogger(__name__)


@dataclass
class Labelled:
    key: str
    structure: Structure
    energy_per_atom: float
    reduced_formula: str
    chemsys: str


@dataclass
class SimulationResult:
    policy: str
    evaluations: list[int] = field(default_factory=list)  # cumulative, per round
    stable_found: list[int] = field(default_factory=list)  # cumulative, per round
    hits: list[float | None] = field(default_factory=list)  # per-round hit rate vs previous hull
    n_stable_total: int = 0

    @property
    def per_100(self) -> float:
        return 100.0 * self.stable_found[-1] / max(self.evaluations[-1], 1) if self.evaluations else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "evaluations": self.evaluations, "stable_found": self.stable_found,
                "hit_rate": self.hits, "n_stable_total": self.n_stable_total, "stable_per_100": self.per_100}


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


def simulate(
    labels: Sequence[Labelled],
    policy: str,
    rounds: int = 5,
    budget: int = 20,
    initial: int = 20,
    seed: int = 0,
    policy_options: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
) -> SimulationResult:
    """Run ``rounds`` rounds of train → screen → select → reveal with one policy."""
    from gnomon.models.ensemble import ModelSpec
    from gnomon.models.screening import Screener
    from gnomon.models.training import Sample, TrainConfig, Trainer

    rng = random.Random(seed)
    elements = [it for it in labels if len(it.structure.composition) == 1]
    compounds = [it for it in labels if len(it.structure.composition) > 1]
    stable = true_stable(labels)
    order = compounds[:]
    rng.shuffle(order)
    known = elements + order[:initial]
    pool = {it.key: it for it in order[initial:]}
    result = SimulationResult(policy, n_stable_total=len(stable))
    evaluated = {it.key for it in order[:initial]}
    mopts = dict(model_options or {})
    spec = ModelSpec(hidden=mopts.pop("hidden", 32), num_layers=mopts.pop("layers", 2))
    for r in range(rounds):
        if not pool:
            break
        candidates = list(pool.values())
        if policy == "random":
            scored = [Scored(it.key, None, 0.0, it.reduced_formula) for it in candidates]
        else:
            config = TrainConfig(ensemble_size=mopts.get("ensemble_size", 5), seed=seed + r,
                                 max_epochs=mopts.get("max_epochs", 150), patience=mopts.get("patience", 20), threads=1)
            trained = Trainer(spec, config).fit([Sample.from_structure(it.key, it.structure, it.energy_per_atom) for it in known])
            preds = Screener(trained.ensemble).predict([it.structure for it in candidates])
            means = [p.energy_per_atom if p.energy_per_atom is not None else np.inf for p in preds]
            e_hull = e_above_known(known, candidates, means)
            scored = [Scored(it.key, e if np.isfinite(means[i]) else None, preds[i].sigma or 0.0, it.reduced_formula)
                      for i, (it, e) in enumerate(zip(candidates, e_hull, strict=True))]
        chosen = make_policy(policy, budget=budget, seed=seed, **(policy_options or {})).select(scored, round_index=r)
        picked = [pool.pop(c.candidate_id) for c in chosen]
        prev = e_above_known(known, picked, [it.energy_per_atom for it in picked])
        judged = [v for v in prev if v is not None]
        result.hits.append(sum(v <= 1e-8 for v in judged) / len(judged) if judged else None)
        known.extend(picked)
        evaluated.update(it.key for it in picked)
        result.evaluations.append(len(evaluated) - initial)
        result.stable_found.append(len((evaluated - {it.key for it in order[:initial]}) & stable))
        log.info("simulate %s round %d: %d evaluated, %d stable found", policy, r, result.evaluations[-1], result.stable_found[-1])
    return result
