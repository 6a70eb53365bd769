"""The world's building blocks: its systems, the oracle's input rule, labels through the hull."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure

from gnomon.world.files import CHECKOUT_WORLD, WorldFiles, load_world
from gnomon.world.label import judged, label, rows_as_plan
from gnomon.world.oracle import INPUT_RULE, oracle_input
from gnomon.world.systems import heldout_systems, world_systems

needs_world = pytest.mark.skipif(not (CHECKOUT_WORLD / "manifest.json").is_file(),
                                 reason="no shipped world in this checkout (bench/world)")


def test_systems_and_hold_out_are_fixed_by_their_seeds():
    systems = world_systems()
    assert systems == world_systems() and len(systems) == 94
    assert [s.count("-") + 1 for s in systems].count(2) == 46
    held = heldout_systems(systems)
    assert set(held) <= set(systems) and len(held) == 18


@needs_world
def test_the_shipped_hold_out_is_the_one_the_code_draws():
    shipped = json.loads((CHECKOUT_WORLD / "heldout.json").read_text())["systems"]
    assert heldout_systems(world_systems()) == shipped


def test_the_oracle_refuses_a_cell_far_denser_than_its_radii_allow():
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert oracle_input(nacl)[1] is None
    squeezed = nacl.copy()
    squeezed.scale_lattice(nacl.volume * 0.05)
    structure, why = oracle_input(squeezed)
    assert structure is squeezed and why.startswith("input refused")
    sodium = Structure(Lattice.cubic(1.0), ["Na"], [[0, 0, 0]])
    assert oracle_input(sodium)[1] is None  # elemental references are taken as measured


@needs_world
def test_labelling_a_closed_chemical_space_again_gives_the_shipped_labels(tmp_path):
    rows, _ = load_world(WorldFiles(CHECKOUT_WORLD))
    binary = next(r["chemsys"] for r in rows if r["chemsys"].count("-") == 1)
    space = set(binary.split("-"))
    mine = [r for r in rows if set(r["chemsys"].split("-")) <= space]
    plan, results = rows_as_plan(mine)
    again = label(plan, judged(results), tmp_path / "world.db")
    by_id = {r["id"]: r for r in mine}
    assert len(again) == len(mine)
    for r in again:
        assert r["e_above_hull"] == pytest.approx(by_id[r["id"]]["e_above_hull"], abs=1e-6)
        assert r["formation_energy_per_atom"] == pytest.approx(
            by_id[r["id"]]["formation_energy_per_atom"], abs=1e-6)


def test_a_collapsed_result_is_judged_a_failure_of_todays_rule():
    inside = Structure(Lattice.cubic(10.0), ["Na", "Na"], [[0, 0, 0], [0.02, 0, 0]])
    out = judged({"a": {"id": "a", "structure": inside.as_dict(), "energy": 1.0}})
    assert "collapsed" in out["a"]["error"] and out["a"]["input_rule"] == INPUT_RULE
