"""Selection policies: which screened candidates get a relaxation this round.

Every policy is a small dataclass with one verb, ``select``. They differ in how they rank
(predicted e_above_hull; mean - k*sigma; nothing at all) and share the rest of what a
campaign needs: a relaxation budget, a share of the budget spent on exploration, a cap
per group (composition or template prototype) so one rich vein does not eat the round, and,
for a campaign over many chemical systems, quotas per system: at most ``per_system_max``
relaxations in one system, and at least ``per_system_min`` in every system that has
candidates (its best first, else drawn in the exploration share), as the budget allows.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from gnomon.config import CampaignConfig, SelectionConfig


@dataclass(frozen=True)
class Scored:
    """A screened candidate, as a policy sees it."""

    candidate_id: str
    e_above_hull: float | None  # predicted, eV/atom; None when no hull could be built
    sigma: float = 0.0  # calibrated ensemble spread, eV/atom
    group: str = ""  # diversity key: reduced formula or template prototype
    system: str = ""  # chemical system (quota key in a multi-system campaign)


@dataclass
class SelectionPolicy(ABC):
    """Ranks candidates, then fills the budget: exploitation first, exploration after."""

    budget: int = 20
    exploration: float = 0.0  # share of the budget drawn at random from the rest
    max_per_group: int | None = None
    seed: int = 0
    per_system_max: int | None = None  # relaxations one chemical system may take at most
    per_system_min: int = 0  # relaxations every system with candidates gets first, budget allowing
    name: ClassVar[str] = "policy"

    @abstractmethod
    def score(self, c: Scored) -> float | None:
        """Lower is more promising; None excludes the candidate from exploitation."""

    def select(self, candidates: Sequence[Scored], round_index: int = 0) -> list[Scored]:
        """The candidates to relax, best first, at most ``budget`` of them."""
        rng = random.Random(f"{self.seed}:{round_index}:{self.name}")
        n_explore = int(round(self.budget * self.exploration))
        n_exploit = self.budget - n_explore
        ranked = sorted(
            (c for c in candidates if self.score(c) is not None),
            key=lambda c: (self.score(c), c.candidate_id),
        )
        chosen: list[Scored] = []
        groups: Counter[str] = Counter()
        systems: Counter[str] = Counter()
        picked: set[str] = set()

        def take(c: Scored) -> bool:
            if c.candidate_id in picked:
                return False
            if self.max_per_group is not None and groups[c.group] >= self.max_per_group:
                return False
            if self.per_system_max is not None and systems[c.system] >= self.per_system_max:
                return False
            chosen.append(c)
            picked.add(c.candidate_id)
            groups[c.group] += 1
            systems[c.system] += 1
            return True

        def fill(pool: Sequence[Scored], until: int) -> None:
            # every system first up to its minimum, then the pool in order
            for short_only in (True, False) if self.per_system_min else (False,):
                for c in pool:
                    if len(chosen) >= until:
                        return
                    if not short_only or systems[c.system] < self.per_system_min:
                        take(c)

        fill(ranked, n_exploit)
        chosen.sort(key=lambda c: (self.score(c), c.candidate_id))
        rest = [
            c
            for c in sorted(candidates, key=lambda c: c.candidate_id)
            if c.candidate_id not in picked
        ]
        rng.shuffle(rest)
        # exploration gets its own share only: budget the filter left unused stays unspent,
        # as GNoME relaxed only what passed its filter
        fill(rest, len(chosen) + n_explore)
        return chosen


@dataclass
class ThresholdPolicy(SelectionPolicy):
    """GNoME's filter: predicted e_above_hull below a threshold, lowest first."""

    threshold: float = 0.05
    name: ClassVar[str] = "threshold"

    def score(self, c: Scored) -> float | None:
        if c.e_above_hull is None or c.e_above_hull > self.threshold:
            return None
        return c.e_above_hull


@dataclass
class GreedyPolicy(SelectionPolicy):
    """Lowest predicted e_above_hull first, no threshold."""

    name: ClassVar[str] = "greedy"

    def score(self, c: Scored) -> float | None:
        return c.e_above_hull


@dataclass
class UncertaintyPolicy(SelectionPolicy):
    """Optimism under uncertainty: rank by mean - k*sigma (a lower confidence bound)."""

    k: float = 1.0
    threshold: float | None = None
    name: ClassVar[str] = "uncertainty"

    def score(self, c: Scored) -> float | None:
        if c.e_above_hull is None:
            return None
        lcb = c.e_above_hull - self.k * c.sigma
        if self.threshold is not None and lcb > self.threshold:
            return None
        return lcb


@dataclass
class RandomPolicy(SelectionPolicy):
    """The baseline every filter must beat: a uniform draw."""

    exploration: float = field(default=1.0)
    name: ClassVar[str] = "random"

    def score(self, c: Scored) -> float | None:
        return None


POLICIES: dict[str, type[SelectionPolicy]] = {
    p.name: p for p in (ThresholdPolicy, GreedyPolicy, UncertaintyPolicy, RandomPolicy)
}


def make_policy(name: str, **options) -> SelectionPolicy:
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown selection policy {name!r}; choose one of {sorted(POLICIES)}"
        ) from None
    if cls is RandomPolicy:
        options = {**options, "exploration": 1.0}
    return cls(**options)


def policy_options(selection: SelectionConfig, name: str) -> dict[str, Any]:
    """The arguments of policy ``name`` that a campaign's selection settings give: every field
    of the policy's dataclass that the settings also have (budget, exploration, threshold,
    k...)."""
    if name not in POLICIES:
        raise ValueError(f"unknown selection policy {name!r}; choose one of {sorted(POLICIES)}")
    settings = selection.model_dump()
    return {
        f.name: settings[f.name] for f in fields(POLICIES[name]) if f.init and f.name in settings
    }


def selection_policy(config: CampaignConfig, name: str | None = None) -> SelectionPolicy:
    """The policy ``name`` (default: the campaign's) as the campaign's settings configure it."""
    name = name or config.selection.policy
    return make_policy(name, **policy_options(config.selection, name), seed=config.seed)
