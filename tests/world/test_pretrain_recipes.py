"""Pretraining recipes: what the shipped model learns from (issue 26, lever 1).

Every sample of a world row (relaxed, unrelaxed input, trajectory frame) carries that row's
relaxed energy and nothing else; no sample of a held-out system reaches training.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.core import Structure
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.storage.chemsys import canonical_chemsys
from gnomon.world.files import WorldFiles, load_world
from gnomon.world.pretrain import (
    RECIPES,
    PretrainError,
    PretrainOptions,
    PretrainRecipe,
    load,
    sample_kind,
    split_world,
    training_samples,
)
from tests.models.pretrained_toy import HELD_OUT, run_pretrain, write_toy_world

ALL_KINDS = PretrainRecipe("all", ("relaxed", "unrelaxed", "frame"),
                           (("relaxed", 1.0), ("unrelaxed", 2.0), ("frame", 0.6)), ("unrelaxed",))


def add_frames(world: Path, every: int = 2) -> list[dict]:
    """Give every ``every``-th row 1-3 trajectory frames whose own energies are NOT the label."""
    rows, _ = load_world(WorldFiles(world))
    for i, row in enumerate(rows):
        if i % every:
            continue
        start, end = Structure.from_dict(row["unrelaxed"]), Structure.from_dict(row["relaxed"])
        frames = []
        for step in range(1 + i % 3):
            s = end.copy()
            s.scale_lattice((start.volume + end.volume) / 2 + step)
            frames.append({"structure": s.as_dict(), "step": 10 * step,
                           "energy_per_atom": row["energy_per_atom"] + 0.5 + step})
        row["frames"] = frames
    with gzip.open(world / "world.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


@pytest.fixture(scope="module")
def framed(tmp_path_factory):
    world = write_toy_world(tmp_path_factory.mktemp("framed") / "world")
    add_frames(world)
    return world, load(world)


def test_every_sample_carries_its_own_rows_relaxed_energy(framed):
    _, data = framed
    samples = training_samples(data, list(range(len(data.rows))), ALL_KINDS)
    by_id = {e.id: (i, e) for i, e in enumerate(data.entries)}
    kinds = {"relaxed": 0, "unrelaxed": 0, "frame": 0}
    for s in samples:
        i, entry = by_id[s.key.split(":")[0]]
        kinds[s.kind] += 1
        assert s.kind == sample_kind(s.key)
        assert s.energy_per_atom == pytest.approx(entry.energy_per_atom)  # never the frame's
        assert s.chemsys == entry.chemsys
        row = data.rows[i]
        if s.kind == "unrelaxed":
            assert s.structure == row["unrelaxed"]
        elif s.kind == "frame":
            assert s.structure in [f["structure"] for f in row["frames"]]
    assert kinds["unrelaxed"] == kinds["relaxed"] == len(data.rows)
    assert kinds["frame"] == data.n_frames > 0


def test_the_frame_label_is_the_relaxed_energy_not_the_frames_own(framed):
    _, data = framed
    i = next(i for i, f in enumerate(data.frames) if f)
    for frame, stored in zip(data.frames[i], data.rows[i]["frames"], strict=True):
        assert frame.energy_per_atom == pytest.approx(data.relaxed[i].energy_per_atom)
        assert frame.energy_per_atom != pytest.approx(stored["energy_per_atom"])


def test_weights_are_per_kind_and_a_rows_frames_share_theirs(framed):
    _, data = framed
    i = next(i for i, f in enumerate(data.frames) if len(f) > 1)
    samples = training_samples(data, [i], ALL_KINDS)
    weight = {k: sum(s.weight for s in samples if s.kind == k) for k in ALL_KINDS.inputs}
    assert weight == pytest.approx({"relaxed": 1.0, "unrelaxed": 2.0, "frame": 0.6})


def test_a_recipe_learns_only_its_kinds(framed):
    _, data = framed
    index = list(range(len(data.rows)))
    for recipe in RECIPES.values():
        kinds = {s.kind for s in training_samples(data, index, recipe)}
        assert kinds == set(recipe.inputs)


def test_recipes_refuse_unknown_kinds_and_validating_on_what_they_do_not_learn():
    with pytest.raises(ValueError, match="unknown sample kinds"):
        PretrainRecipe("x", ("relaxed", "ionic"))
    with pytest.raises(ValueError, match="validates on kinds"):
        PretrainRecipe("x", ("relaxed",), validate_on=("unrelaxed",))
    with pytest.raises(PretrainError, match="unknown recipe"):
        _ = PretrainOptions(recipe="nope").the_recipe


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    """A toy world whose every row has frames (built once: hypothesis varies the split)."""
    world = write_toy_world(tmp_path_factory.mktemp("prop") / "world")
    add_frames(world, every=1)
    return load(world)


def _structure_system(structure: dict) -> str:
    return canonical_chemsys(Structure.from_dict(structure).composition.chemical_system)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_held_out_label_reaches_training_over_random_splits(toy_data, data):
    systems = sorted(set(toy_data.chemsys))
    compounds = [s for s in systems if "-" in s]
    held = set(data.draw(st.lists(st.sampled_from(compounds), min_size=1,
                                  max_size=len(compounds) - 1, unique=True)))
    world = replace(toy_data, held={canonical_chemsys(s) for s in held})
    split = split_world(world)
    recipe = data.draw(st.sampled_from([*RECIPES.values(), ALL_KINDS]))
    samples = training_samples(world, split.train, recipe)
    assert samples
    held_ids = {toy_data.entries[i].id for i in split.test}
    for s in samples:
        assert canonical_chemsys(s.chemsys) not in world.held
        assert _structure_system(s.structure) not in world.held  # unrelaxed inputs, frames too
        assert s.key.split(":")[0] not in held_ids


def test_pretrain_with_unrelaxed_inputs_validates_on_them(tmp_path):
    world = write_toy_world(tmp_path / "world")
    add_frames(world)
    out = run_pretrain(world, tmp_path / "model", "--recipe", "relaxed+unrelaxed")
    card = json.loads((out / "card.json").read_text())
    recipe = card["recipe"]
    assert recipe["name"] == "relaxed+unrelaxed" and recipe["validate_on"] == ["unrelaxed"]
    seen = recipe["samples"]
    assert seen["train"]["relaxed"] == seen["train"]["unrelaxed"] > 0
    assert seen["train"]["frame"] > 0 and recipe["frames_in_world"] > 0
    assert seen["val"]["unrelaxed"] > 0 and seen["val"]["relaxed"] == seen["val"]["frame"] == 0
    val_systems = set(card["split"]["validation_systems"])
    assert val_systems and val_systems <= set(card["split"]["train_systems"])
    assert not val_systems & set(HELD_OUT)
    assert "--recipe relaxed+unrelaxed" in card["command"]
    assert card["metrics"]["validation_systems"]["unrelaxed"]["mae"] >= 0


def test_pretrain_refuses_an_unknown_recipe(tmp_path):
    run = CliRunner().invoke(app, ["model", "pretrain", "--world", str(tmp_path),
                                   "--recipe", "nope"])
    assert run.exit_code != 0 and "unknown recipe" in run.output
