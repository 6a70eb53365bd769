"""Selection policies: ranking, thresholds, budgets, exploration and diversity."""

from __future__ import annotations

import pytest

from gnomon.campaign.selection import Scored, make_policy


def pool(n: int = 20) -> list[Scored]:
    return [
        Scored(f"c{i:02d}", e_above_hull=0.01 * i - 0.05, sigma=0.002 * (n - i), group=f"g{i % 4}")
        for i in range(n)
    ]


def test_threshold_takes_lowest_below_threshold():
    chosen = make_policy("threshold", budget=50, threshold=0.0005).select(pool())
    assert [c.candidate_id for c in chosen] == ["c00", "c01", "c02", "c03", "c04", "c05"]


def test_budget_is_respected_and_ranked():
    chosen = make_policy("greedy", budget=3).select(pool())
    assert [c.candidate_id for c in chosen] == ["c00", "c01", "c02"]


def test_uncertainty_prefers_high_sigma_when_means_are_close():
    cands = [Scored("sure", 0.02, 0.0), Scored("unsure", 0.03, 0.05)]
    assert make_policy("uncertainty", budget=1, k=1.0).select(cands)[0].candidate_id == "unsure"
    assert make_policy("greedy", budget=1).select(cands)[0].candidate_id == "sure"


def test_diversity_cap_per_group():
    chosen = make_policy("greedy", budget=8, max_per_group=1).select(pool())
    assert len(chosen) == 4
    assert len({c.group for c in chosen}) == 4


def test_exploration_share_is_random_but_reproducible():
    p = make_policy("greedy", budget=10, exploration=0.3, seed=5)
    a = p.select(pool(100), round_index=1)
    b = p.select(pool(100), round_index=1)
    assert a == b
    assert [c.candidate_id for c in a[:7]] == [f"c{i:02d}" for i in range(7)]
    assert all(int(c.candidate_id[1:]) >= 7 for c in a[7:])
    assert a != p.select(pool(100), round_index=2)


def test_random_ignores_scores_and_none_predictions():
    cands = [Scored(f"x{i}", None) for i in range(10)]
    chosen = make_policy("random", budget=4, seed=1).select(cands)
    assert len(chosen) == 4 and len({c.candidate_id for c in chosen}) == 4
    assert make_policy("greedy", budget=4).select(cands) == []


def test_unknown_policy_is_named():
    with pytest.raises(ValueError, match="unknown selection policy 'best'"):
        make_policy("best")
