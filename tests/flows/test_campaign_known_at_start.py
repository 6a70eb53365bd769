"""A world's replay pool (gnomon.world.replay, bench/campaigns.py's data): what a replayed
campaign may pick and what it knows from the start."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from gnomon.world import replay
from tests.models.pretrained_toy import HELD_OUT, write_toy_world


def _campaigns():
    """Where the pool is made (bench/campaigns.py replays campaigns on it)."""
    return replay


def _with_waves(folder: Path) -> dict[str, int]:
    """Give the toy world's compounds waves 1-4 in turn; returns id -> wave."""
    path = folder / "world.jsonl.gz"
    rows = [json.loads(line) for line in gzip.open(path, "rt")]
    waves = {}
    for i, r in enumerate(rows):
        r["wave"] = 1 + i % 4
        r["e_above_hull"] = 0.0 if i % 7 == 0 else 0.1
        waves[r["id"]] = r["wave"]
    with gzip.open(path, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return waves


def test_known_at_start_moves_the_first_build_out_of_the_pool(tmp_path):
    campaigns = _campaigns()
    folder = write_toy_world(tmp_path / "world")
    waves = _with_waves(folder)
    held = set(HELD_OUT)

    def chemsys(item):
        return "-".join(sorted(item.chemsys.split("-")))

    plain = campaigns.campaign_data(folder)
    first = campaigns.campaign_data(folder, known="first-build")
    pool_plain = {it.key for it in plain["labels"] if chemsys(it) in held}
    pool_first = {it.key for it in first["labels"] if chemsys(it) in held}
    assert pool_plain and pool_first
    # from the elements: every held-out compound is a candidate
    assert {waves[k] for k in pool_plain} == {1, 2, 3, 4}
    # from the first build: its phases are known, never candidates; the later waves are the pool
    assert {waves[k] for k in pool_first} == {3, 4}
    known_first = {it.key for it in first["reference"] if chemsys(it) in held}
    assert known_first == pool_plain - pool_first
    assert not {it.key for it in plain["reference"] if chemsys(it) in held}
    # the stable phases counted are the pool's own
    assert first["stable"] <= pool_first and plain["stable"] <= pool_plain
    assert first["n_pool"] == len(pool_first) and plain["n_pool"] == len(pool_plain)


def test_a_world_without_waves_is_refused_rather_than_guessed(tmp_path):
    campaigns = _campaigns()
    folder = write_toy_world(tmp_path / "world")  # rows without a wave, as older worlds
    assert campaigns.campaign_data(folder)["n_pool"] > 0  # the elements start needs no waves
    with pytest.raises(ValueError, match="has no wave"):
        campaigns.campaign_data(folder, known="first-build")
