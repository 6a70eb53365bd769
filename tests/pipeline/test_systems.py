"""Campaigns over many chemical systems: the list of sub-systems, charge-balance feasibility,
fair shares of a generation stream, and per-system quotas in selection."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from gnomon.campaign.selection import Scored, make_policy
from gnomon.campaign.systems import (
    fair_take,
    feasible_systems,
    round_robin,
    system_compositions,
)
from gnomon.storage.chemsys import (
    arity,
    canonical_chemsys,
    chemical_systems,
    chemsys_of,
    subsystems,
)


def test_every_subsystem_up_to_max_arity():
    systems = chemical_systems(["O", "Li", "Mn", "Na", "Fe"], max_arity=3)
    assert len(systems) == math.comb(5, 2) + math.comb(5, 3)
    assert len(set(systems)) == len(systems)
    assert {arity(s) for s in systems} == {2, 3}
    assert "Fe-Li-O" in systems and "Li-Na" in systems
    assert all(s.split("-") == sorted(s.split("-")) for s in systems)
    # eight elements to arity four: 28 + 56 + 70 systems
    assert len(chemical_systems([*"CHNOPS", "Li", "Na"], max_arity=4)) == 28 + 56 + 70
    assert chemical_systems(["Li", "O"], max_arity=None) == ["Li-O"]


def test_smact_feasibility_drops_systems_no_composition_balances():
    systems = chemical_systems(["Li", "Na", "O", "F"], max_arity=2)
    formulas = system_compositions(systems, max_atoms=6)
    assert "Li2O" in formulas["Li-O"] and "NaF" in formulas["F-Na"]
    assert formulas["Li-Na"] == []  # two cations: nothing is neutral in strict mode
    feasible = feasible_systems(systems, max_atoms=6)
    assert "Li-Na" not in feasible and "Li-O" in feasible
    assert set(feasible) == {s for s in systems if formulas[s]}


def test_round_robin_gives_every_system_a_turn():
    order = list(round_robin({"A-B": ["ab1", "ab2", "ab3"], "A-C": ["ac1"], "B-C": ["bc1", "bc2"]}))
    assert order == ["ab1", "ac1", "bc1", "ab2", "bc2", "ab3"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["A-B", "A-C", "B-C", "A-B-C"]), max_size=40), st.integers(0, 15))
def test_fair_take_respects_shares_and_spends_the_rest(stream, limit):
    items = list(enumerate(stream))
    n_systems = 4
    out = fair_take(items, limit, n_systems, system=lambda item: item[1])
    share = max(1, math.ceil(limit / n_systems))
    assert len(out) == min(limit, len(items))
    assert out == sorted(out)  # stream order kept
    counts = Counter(s for _, s in out)
    available = Counter(stream)
    for s, n in counts.items():
        if n > share:  # over its share only when no other system had more to give
            assert all(counts[o] == available[o] for o in available if o != s and counts[o] < share)


def _scored(system: str, n: int, start: float = 0.0) -> list[Scored]:
    return [
        Scored(f"{system}-{i}", start + 0.001 * i, group=f"{system}-{i}", system=system)
        for i in range(n)
    ]


def test_per_system_max_stops_one_system_taking_the_budget():
    rich = _scored("Li-O", 20, start=-0.5)  # every one better than any other system's
    others = _scored("Mn-O", 5) + _scored("Li-Mn-O", 5)
    policy = make_policy("greedy", budget=8, exploration=0.0, max_per_group=None)
    assert {c.system for c in policy.select(rich + others)} == {"Li-O"}
    capped = make_policy("greedy", budget=8, exploration=0.0, max_per_group=None, per_system_max=3)
    chosen = capped.select(rich + others)
    counts = Counter(c.system for c in chosen)
    assert len(chosen) == 8 and max(counts.values()) <= 3 and len(counts) == 3
    # within a system the best go first
    assert [c.candidate_id for c in chosen if c.system == "Li-O"] == ["Li-O-0", "Li-O-1", "Li-O-2"]


def test_per_system_min_reaches_every_system_with_candidates():
    rich = _scored("Li-O", 20, start=-0.5)
    others = _scored("Mn-O", 5) + _scored("Li-Mn-O", 5)
    policy = make_policy("greedy", budget=6, exploration=0.0, max_per_group=None, per_system_min=1)
    chosen = policy.select(rich + others)
    counts = Counter(c.system for c in chosen)
    assert counts["Mn-O"] >= 1 and counts["Li-Mn-O"] >= 1 and len(chosen) == 6
    assert "Mn-O-0" in {c.candidate_id for c in chosen}  # the system's best, not any
    # the random policy honours the minimum in its draw
    rand = make_policy("random", budget=3, per_system_min=1, seed=4)
    assert {c.system for c in rand.select(rich + others)} == {"Li-O", "Mn-O", "Li-Mn-O"}
    # a threshold that passes nothing of a system leaves its minimum to exploration
    threshold = make_policy(
        "threshold", threshold=-0.1, budget=4, exploration=0.5, per_system_min=1, max_per_group=None
    )
    chosen = threshold.select(rich + others)
    assert sum(c.system == "Li-O" for c in chosen) == 2 and {c.system for c in chosen} == {
        "Li-O",
        "Mn-O",
        "Li-Mn-O",
    }


def test_one_name_per_chemical_system():
    """Every spelling of a system indexes as one; the empty name has no elements."""
    assert (
        canonical_chemsys("O-Li")
        == canonical_chemsys("Li-O-Li")
        == chemsys_of(["O", "Li", "O"])
        == "Li-O"
    )
    assert arity("") == 0 and arity("-") == 0 and arity("Li-Mn-O") == 3 and arity("O-O") == 1
    assert subsystems("O-Li") == ["Li", "O", "Li-O"]
    assert subsystems("Mn-Li-O", min_arity=2) == ["Li-Mn", "Li-O", "Mn-O", "Li-Mn-O"]
