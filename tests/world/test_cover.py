"""The cover: which binaries it plans (only missing cation–anion ones, never a held-out
system), the coverage table's counts, and, with the real oracle, a resume that relaxes
nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pymatgen.core import Structure
from typer.testing import CliRunner

from gnomon.cli import app
from gnomon.world.cover import CoverPlan, CoverSpec, cover, cover_record, missing_systems
from gnomon.world.coverage import binaries, cation_pairs, cations_of, coverage, ternaries
from gnomon.world.files import CHECKOUT_WORLD, WorldFiles, load_world, write_jsonl_gz
from gnomon.world.manifest import Tally, check, write_manifest
from gnomon.world.oracle import oracle_input, results_done
from gnomon.world.plan_cover import COVER_WAVE, cover_templates, plan_cover_system
from gnomon.world.systems import ANIONS

needs_world = pytest.mark.skipif(not (CHECKOUT_WORLD / "manifest.json").is_file(),
                                 reason="no shipped world in this checkout (bench/world)")


def _row(chemsys: str) -> dict:
    return {"chemsys": chemsys}


def test_the_coverage_table_counts_binaries_and_pairs_met_in_larger_systems():
    rows = [_row("Mg-O"), _row("Mg-O"), _row("Cl-Na"), _row("Mg"), _row("Na-O-Ti"),
            _row("Cl-Cu")]
    cov = coverage(rows, ["Cl-Cu"], ["Mg", "Na", "Ti", "Cu"], ["O", "Cl"])
    assert cov.count("Mg", "O") == 2 and cov.count("Na", "Cl") == 1
    assert cov.count("Cu", "Cl") == 1 and cov.count("Na", "O") == 0
    assert cov.pairs == 8 and cov.held == 3
    assert cov.cation_pairs == 6 and cov.cation_pairs_held == 0
    with_alloy = coverage([*rows, _row("Cu-Mg"), _row("Cu-Mg")], [], ["Mg", "Na", "Ti", "Cu"],
                          ["O", "Cl"])
    assert with_alloy.cation_pairs_held == 1 and with_alloy.as_dict()["cation_pairs_held"] == 1
    record = cov.as_dict()
    assert record["binary_structures"] == {"Mg-O": 2, "Cl-Na": 1, "Cl-Cu": 1}
    assert record["only_in_larger_systems"] == ["Na-O", "O-Ti"]
    assert cov.ternary == {"O": 1} and record["ternary_systems"] == {"O": 1}


def test_cations_are_every_element_but_the_anions_and_extra_ones_come_after():
    cations = cations_of(["Ru", "Mg"], ["O", "S"])
    assert cations[-1] == "Ru" and cations.count("Mg") == 1
    assert not set(cations) & set(ANIONS)
    assert binaries(["Mg", "Na"], ["S", "O"]) == ["Mg-S", "Na-S", "Mg-O", "Na-O"]


def test_planning_picks_only_missing_cation_anion_binaries_never_a_held_out_one():
    spec = CoverSpec(anions=("O", "Cl"), per_system=3, only_cations=("Mg", "Na", "Cu"))
    world = [_row("Mg-O")] * 3 + [_row("Cl-Na")] * 2 + [_row("Cl-Mg-Na")] * 5
    held = {"Cl-Cu", "Na-O"}
    todo = missing_systems(spec, spec.systems(), world, held, planned_to={"Cu-O": 3})
    # Mg-O has its 3, Cu-O was planned to 3, Na-O and Cl-Cu are held out; Cl-Na has 2 of 3
    assert todo == ["Cl-Na", "Cl-Mg"]  # the world's order of elements: alkali first
    assert missing_systems(spec, binaries(spec.cations, ["O"]), world, held, {}) == ["Cu-O"]
    every = CoverSpec(per_system=100, between_cations=True)
    assert not any(s in held for s in missing_systems(every, every.systems(), [], held, {}))


def test_between_cations_the_cover_plans_each_cation_pair_once_after_the_anions():
    spec = CoverSpec(anions=("O",), per_system=2, only_cations=("Li", "Mg", "Mn"),
                     between_cations=True)
    groups = spec.groups()
    assert [g for g, _ in groups] == ["O", "Li", "Mg"]  # anions first, then cation by cation
    assert groups[1:] == [("Li", ["Li-Mg", "Li-Mn"]), ("Mg", ["Mg-Mn"])]
    pairs = [s for _, systems in cation_pairs(cations_of([], ANIONS)) for s in systems]
    n = len(cations_of([], ANIONS))
    assert len(pairs) == len(set(pairs)) == n * (n - 1) // 2
    world = [_row("Li-Mg")] * 2 + [_row("Li-Mn")]
    assert missing_systems(spec, spec.systems(), world, {"Mg-Mn"}, {}) == [
        "Li-O", "Mg-O", "Mn-O", "Li-Mn"]
    assert CoverSpec(anions=("O",), only_cations=("Li", "Mg")).systems() == ["Li-O", "Mg-O"]


def test_the_ternary_cover_gives_every_b_cation_k_a_partners_per_anion_shared_evenly():
    cations = cations_of([], ANIONS)
    groups = ternaries(cations, ["O", "S"], 2)
    assert [a for a, _ in groups] == ["O", "S"]
    a_site = {"Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Sr", "Ba"}
    b_site = [c for c in cations if c not in a_site]
    pairings = []
    for anion, systems in groups:
        assert len(systems) == len(set(systems)) == 2 * len(b_site)
        partners: dict[str, set[str]] = {}
        uses: dict[str, int] = {}
        for s in systems:
            els = set(s.split("-"))
            assert anion in els and len(els) == 3
            (a,) = els & a_site
            (b,) = els - a_site - {anion}
            partners.setdefault(b, set()).add(a)
            uses[a] = uses.get(a, 0) + 1
        assert all(len(p) == 2 for p in partners.values()) and set(partners) == set(b_site)
        assert set(uses) == a_site and max(uses.values()) - min(uses.values()) <= 1
        pairings.append({frozenset(set(s.split("-")) - {anion}) for s in systems})
    assert pairings[0] != pairings[1]  # each anion pairs the cations differently
    assert ternaries(["Mg", "Ti"], ["O"], 3) == [("O", ["Mg-O-Ti"])]  # k capped at the A's
    assert ternaries(["Ti", "Zr"], ["O"], 2) == [] and ternaries(cations, ["O"], 0) == []


def test_the_ternaries_come_last_and_never_into_a_held_out_system():
    spec = CoverSpec(anions=("O", "F"), per_system=2, only_cations=("Li", "Mg", "Ti"),
                     between_cations=True, ternary_partners=1)
    assert [g for g, _ in spec.groups()] == ["O", "F", "Li", "Mg", "O ternaries",
                                             "F ternaries"]
    assert spec.groups()[-2] == ("O ternaries", ["Li-O-Ti"])
    assert spec.groups()[-1] == ("F ternaries", ["F-Mg-Ti"])
    todo = missing_systems(spec, spec.systems(), [_row("Li-O-Ti")] * 2, {"F-Mg-Ti"}, {})
    assert "Li-O-Ti" not in todo and "F-Mg-Ti" not in todo


def test_a_ternary_plan_is_small_of_exactly_its_system_and_never_refused_by_the_oracle():
    plan = plan_cover_system("Li-O-Ti", 4, existing=[], known=[])
    assert 0 < len(plan) <= 4
    structures = [Structure.from_dict(p.structure) for p in plan]
    assert all(len(s) <= 8 and oracle_input(s)[1] is None for s in structures)
    assert all(s.composition.chemical_system == "Li-O-Ti" for s in structures)


def test_ternary_compounds_template_a_cover_but_never_a_held_out_ones():
    def row(chemsys: str, e_hull: float, nsites: int = 5) -> dict:
        return {"id": chemsys, "chemsys": chemsys, "relaxed": {}, "e_above_hull": e_hull,
                "nsites": nsites}

    rows = [row("Mg-O", 0.0), row("Ca-O-Ti", 0.0), row("Ba-O-Ti", 0.0), row("Li-O-Ti", 0.5),
            row("Li-Mn-O-P", 0.0), row("Mg", 0.0), row("Al-O-Sr", 0.0, nsites=20)]
    assert [k for k, _ in cover_templates(rows, {"Ba-O-Ti"})] == ["Mg-O", "Ca-O-Ti"]


def test_an_intermetallic_plan_is_small_and_never_refused_by_the_oracle():
    plan = plan_cover_system("Al-Mg", 4, existing=[], known=[])
    assert 0 < len(plan) <= 4
    structures = [Structure.from_dict(p.structure) for p in plan]
    assert all(len(s) <= 8 and oracle_input(s)[1] is None for s in structures)
    assert all(set(s.composition.chemical_system.split("-")) == {"Al", "Mg"} for s in structures)


def test_a_binary_plan_is_small_balanced_first_and_never_refused_by_the_oracle():
    plan = plan_cover_system("N-Y", 6, existing=[], known=[])
    assert 0 < len(plan) <= 6
    structures = [Structure.from_dict(p.structure) for p in plan]
    assert all(len(s) <= 8 and oracle_input(s)[1] is None for s in structures)
    assert structures[0].composition.reduced_formula == "YN"
    assert all(p.chemsys == "N-Y" for p in plan)


def test_the_cover_plan_resumes_from_its_lines_and_skips_a_cut_one(tmp_path):
    plan = CoverPlan.read(tmp_path)
    plan.add("Mg-O", 4, [{"id": "Mg-O:a", "chemsys": "Mg-O", "structure": {}}])
    with (tmp_path / "systems.jsonl").open("a") as fh:
        fh.write('{"system": "Cl-Na", "per_sys')  # a kill in the middle of a line
    again = CoverPlan.read(tmp_path)
    assert again.planned_to == {"Mg-O": 4}
    assert [p["wave"] for p in again.structures] == [COVER_WAVE]


def test_the_manifest_lists_covered_systems_inside_a_held_out_one(tmp_path):
    plan = [{"id": "Rb-S:a", "chemsys": "Rb-S"}, {"id": "Mg-O:a", "chemsys": "Mg-O"}]
    results = {"Rb-S:a": {"energy": -1.0}, "Mg-O:a": {"error": "refused"}}
    record = cover_record(WorldFiles(tmp_path), plan, results, {"Rb-S-Ta", "Cs-S"})
    assert record["subsystems_of_heldout"] == ["Rb-S"]
    assert record["tally"] == {"planned": 2, "attempted": 2, "failed": 1}
    assert record["relaxed_by_anion"] == {"S": 1}


def _tiny_world(tmp_path: Path) -> WorldFiles:
    """Na, K, Cl and Br with a few K-Br rows from the shipped world; Br-Na held out."""
    rows, _ = load_world(WorldFiles(CHECKOUT_WORLD))
    keep = [r for r in rows if r["chemsys"] in ("Na", "K", "Cl", "Br")]
    keep += [r for r in rows if r["chemsys"] == "Br-K"][:3]
    files = WorldFiles(tmp_path / "world")
    files.root.mkdir()
    write_jsonl_gz(files.world, keep)
    files.heldout.write_text(json.dumps({"systems": ["Br-Na"]}))
    write_manifest(files, keep, ["Br-K", "Br-Na"], ["Br-Na"], Tally(len(keep), len(keep), 0))
    return files


@needs_world
def test_the_coverage_command_prints_the_worlds_pairs(tmp_path):
    files = _tiny_world(tmp_path)
    run = CliRunner().invoke(app, ["world", "coverage", str(files.root), "--anions", "Cl,Br"])
    assert run.exit_code == 0, run.output
    # 38 cations x 2 anions; only Br-K holds rows
    assert "1 of 76 cation–anion pairs held" in run.output
    assert "ternary systems: none" in run.output
    manifest = json.loads(files.manifest.read_text())
    assert manifest["coverage"]["binary_structures"] == {"Br-K": 3}


@needs_world
@pytest.mark.slow
def test_a_cover_resumes_relaxing_nothing_twice_and_the_world_checks(tmp_path):
    pytest.importorskip("chgnet")
    files = _tiny_world(tmp_path)
    spec = CoverSpec(anions=("Cl", "Br"), per_system=2, only_cations=("Na", "K"))
    assert cover(files, spec, workers=1)
    plan = CoverPlan.read(files.cover)
    assert {p["chemsys"] for p in plan.structures} == {"Cl-Na", "Cl-K"}  # Br-Na is held out
    assert len(plan.structures) == 4
    # a worker killed before its last result: the next run relaxes that one only
    (results,) = files.cover.glob("relaxed-*.jsonl")
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:-1]))
    assert cover(files, spec, workers=1)
    ids = [json.loads(line)["id"] for f in files.cover.glob("relaxed-*.jsonl")
           for line in f.read_text().splitlines()]
    assert sorted(ids) == sorted(p["id"] for p in plan.structures)  # each once
    n_files = len(list(files.cover.glob("relaxed-*.jsonl")))
    assert cover(files, spec, workers=1)  # all done: nothing relaxed, nothing planned
    assert len(list(files.cover.glob("relaxed-*.jsonl"))) == n_files
    assert len(CoverPlan.read(files.cover).structures) == 4
    assert check(files).ok
    rows, held = load_world(files)
    covered = [r for r in rows if r["wave"] == COVER_WAVE]
    ok = [k for k, r in results_done(files.cover).items() if "error" not in r]
    assert len(covered) == len(ok) and held == {"Br-Na"}
    manifest = json.loads(files.manifest.read_text())
    assert manifest["cover"]["tally"]["planned"] == 4 and manifest["cover"]["complete"]
    assert manifest["counts"]["planned"] == len(rows) - len(covered) + 4


@needs_world
def test_a_grow_takes_its_base_without_the_cover_which_it_adds_again(tmp_path):
    from gnomon.world.grow import _grow_base

    files = _tiny_world(tmp_path)
    rows, _ = load_world(files)
    rows[-1] = {**rows[-1], "wave": COVER_WAVE}
    write_jsonl_gz(files.world, rows)
    manifest = json.loads(files.manifest.read_text())
    manifest["cover"] = {"tally": {"planned": 1, "attempted": 1, "failed": 0}}
    files.manifest.write_text(json.dumps(manifest))
    files.grow.mkdir()
    base, base_manifest = _grow_base(files)
    assert len(base) == len(rows) - 1 and all(r.get("wave") != COVER_WAVE for r in base)
    assert base_manifest["counts"]["planned"] == manifest["counts"]["planned"] - 1
    assert "cover" not in base_manifest
