"""Fidelity stages of a round (screen -> mlip -> dft) with two instances of the instant fake
engine, each in a scheme of its own, through the real relaxation service and local worker
processes: the gate lets through only what is near the mlip hull, no hull mixes schemes, each
DFT result records its path, and a round cut between the stages resumes without running a
relaxation twice."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from gnomon.campaign.reports.stages import discovery_paths, stage_section
from gnomon.campaign.steps import (
    STAGE_STEPS,
    STEP_FUNCTIONS,
    STEPS,
    RoundContext,
    mlip_gate,
    round_finished,
    run_step,
)
from gnomon.config import CampaignConfig, Settings, mlip_engine_name
from gnomon.pipeline.generation.identity import candidate_from_structure
from gnomon.pipeline.thermo.calibration import Calibration
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import CalcState, Calculation, Candidate, Entry, Phase, Round, StepState

MLIP_SCHEME = "mlip-fake-1"
DFT_SCHEME = "dft-fake-1"
THROUGH_MLIP = ("mlip_relax", "mlip_ingest", "mlip_gate")


class StagedContext(RoundContext):
    """A round whose two engines are the test double (the config names real ones)."""

    engines: dict = {}

    @cached_property
    def engine(self):
        return self.engines["dft"]

    @cached_property
    def mlip_engine(self):
        return self.engines["mlip"]


@pytest.fixture
def engines(fake_engine):
    from gnomon_fake_engine import FakeEngine

    # the mlip stage shrinks cells by 3 %, the dft stage by 1 %: a DFT result shows where it started
    return {
        "mlip": FakeEngine(scheme_name=MLIP_SCHEME, scale=0.97),
        "dft": FakeEngine(scheme_name=DFT_SCHEME, scale=0.99),
    }


def _context(home: Path, engines: dict, **config) -> StagedContext:
    cfg = CampaignConfig(
        name="stages-test",
        elements=["Li", "O"],
        known_phases=False,
        stages=config.pop("stages", ["screen", "mlip", "dft"]),
        dispatch={"name": "local", "workers": 1, "pack": 8, "poll_interval": 0.2},
        **config,
    )
    ctx = StagedContext(Settings(home=home), cfg, 0)
    ctx.engines = engines
    return ctx


def _candidates() -> dict[str, Candidate]:
    """Three Li-O structures; the fake engine gives each -1.2 eV/atom in either scheme."""
    cubic = Lattice.cubic(4.0)
    structures = {
        "LiO": Structure(cubic, ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "Li2O": Structure(
            Lattice.cubic(4.6),
            ["O", "Li", "Li"],
            [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]],
        ),
        "Li3O": Structure(
            cubic, ["O", "Li", "Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        ),
    }
    return {
        f: candidate_from_structure(s, "saps", campaign="stages-test", round=0)
        for f, s in structures.items()
    }


def _through_select(ctx: StagedContext) -> dict[str, Candidate]:
    """References in both schemes, a deep LiO phase known to the mlip scheme only, and the
    three candidates selected. On the mlip hull (Li -1, LiO -1.5, O -1 eV/atom) the candidates'
    -1.2 eV/atom lies 0.3 (LiO), 0.133 (Li2O) and 0.05 (Li3O) eV/atom above it."""
    return _select_for_fill(ctx, ["LiO", "Li2O", "Li3O"], [])


@pytest.mark.slow
def test_a_round_cut_between_the_stages_resumes_and_only_candidates_near_the_mlip_hull_reach_dft(
    tmp_path, engines
):
    home = tmp_path / "home"
    first = _context(home, engines)
    candidates = _through_select(first)
    refs = first.round().outputs["references"]
    assert (
        len(refs["relaxed"]) == 2 and len(refs["mlip"]["relaxed"]) == 2
    )  # Li and O, in each scheme
    for step in THROUGH_MLIP:
        run_step(first, step, STEP_FUNCTIONS[step])
    # what a process killed just after starting the dft stage leaves behind: the step marked
    # running, its relaxation submitted to a worker, nothing collected
    passed = first.outputs("mlip_gate")["passed"]
    record = first.round()
    first.repo.update_fields(
        "rounds",
        first.round_id,
        {"steps": {**{k: v.value for k, v in record.steps.items()}, "relax": "running"}},
    )
    first.relaxations().submit(
        list(first.repo.query(Candidate, {"id": passed})),
        first.engine,
        "local",
        campaign="stages-test",
        round=0,
    )
    mlip_before = {c.id: c.attempts for c in first.repo.query(Calculation, {"scheme": MLIP_SCHEME})}
    first.close()

    ctx = _context(home, engines)
    try:
        for step in STEPS:
            run_step(ctx, step, STEP_FUNCTIONS[step])
        assert round_finished(ctx.round())
        calcs = list(ctx.repo.query(Calculation))
        assert {c.id: c.attempts for c in calcs if c.scheme == MLIP_SCHEME} == mlip_before
        assert all(c.state is CalcState.done and c.attempts == 1 for c in calcs)
        runs = [
            line for c in calcs for line in Path(c.workdir, "attempts.log").read_text().splitlines()
        ]
        assert len(runs) == len(calcs)  # one relaxation started per calculation, none repeated
        _assert_gated_and_apart(ctx, candidates)

        # the gate's threshold is the config's: at 0.2 eV/atom Li2O goes on too
        wider = _context(home, engines, mlip_e_above_hull=0.2)
        try:
            passed = [
                wider.repo.get(Candidate, c).reduced_formula for c in mlip_gate(wider)["passed"]
            ]
            assert sorted(passed) == ["Li2O", "Li3O"]
        finally:
            wider.close()
    finally:
        ctx.close()


def _assert_gated_and_apart(ctx: StagedContext, candidates: dict[str, Candidate]) -> None:
    out = ctx.round().outputs
    gate = out["mlip_gate"]
    held = {
        ctx.repo.get(Entry, eid).reduced_formula: e_hull
        for eid, e_hull in gate["held_back"].items()
    }
    assert held == {
        "Li2O2": pytest.approx(0.3),
        "Li2O": pytest.approx(0.2 / 1.5),
    }  # pymatgen writes LiO Li2O2
    (passed,) = gate["passed"]
    start = ctx.repo.get(Candidate, passed)
    assert start.generator == "mlip" and start.parent_candidate_id == candidates["Li3O"].id

    # the dft stage relaxed the one that passed, from its ML-relaxed structure
    assert out["relax"]["calculations"] == [Calculation.key(passed, ctx.engine.settings_hash)]
    references = set(out["references"]["relaxed"])
    dft_runs = {
        c.candidate_id for c in ctx.repo.query(Calculation, {"scheme": DFT_SCHEME})
    } - references
    assert dft_runs == {passed}
    mlip_entry = ctx.repo.get(Entry, start.parent_entry_id)
    assert mlip_entry.scheme == MLIP_SCHEME and mlip_entry.candidate_id == candidates["Li3O"].id
    ml_relaxed, dft_start = (
        Structure.from_dict(d) for d in (mlip_entry.structure, start.structure)
    )
    assert StructureMatcher().fit(ml_relaxed, dft_start)
    raw = Structure.from_dict(candidates["Li3O"].structure)
    assert dft_start.volume / len(dft_start) == pytest.approx(raw.volume / len(raw) * 0.97**3)
    (dft_entry_id,) = out["ingest"]["entries"]
    dft_entry = ctx.repo.get(Entry, dft_entry_id)
    dft_relaxed = Structure.from_dict(dft_entry.structure)
    assert dft_relaxed.volume / len(dft_relaxed) == pytest.approx(
        raw.volume / len(raw) * (0.97 * 0.99) ** 3
    )

    # the path candidate -> mlip entry -> dft entry, on the records and in the round
    assert dft_entry.scheme == DFT_SCHEME and dft_entry.parent_entry_id == mlip_entry.id
    assert out["ingest"]["paths"] == [
        {"candidate": candidates["Li3O"].id, "mlip_entry": mlip_entry.id, "dft_entry": dft_entry.id}
    ]

    # no hull mixes schemes: each scheme's phases are exactly its own entries
    for scheme in (MLIP_SCHEME, DFT_SCHEME):
        entries = {e.id: e for e in ctx.repo.entries(scheme=scheme)}
        phases = ctx.repo.phases(scheme=scheme)
        assert {p.id for p in phases} == set(entries) and all(
            entries[p.id].scheme == scheme for p in phases
        )
    assert (
        len(ctx.repo.entries(scheme=MLIP_SCHEME)) == 2 + 1 + 3
    )  # references, imported LiO, candidates
    assert len(ctx.repo.entries(scheme=DFT_SCHEME)) == 2 + 1  # references, the one that passed
    # on the DFT hull (no LiO there) Li3O at -1.2 eV/atom is stable
    assert ctx.repo.get(Phase, dft_entry.id).is_stable

    # ... and in the report
    paths = discovery_paths(ctx.repo, [dft_entry.id])
    assert paths == [
        {
            "formula": "Li3O",
            "candidate": candidates["Li3O"].id,
            "mlip_entry": mlip_entry.id,
            "mlip_e_above_hull": pytest.approx(0.05),
            "dft_entry": dft_entry.id,
        }
    ]
    lines = stage_section(ctx.repo, ctx.config, [ctx.repo.get(Round, ctx.round_id)], [dft_entry.id])
    assert "## Stages" in lines and any(
        mlip_entry.id in line and dft_entry.id in line for line in lines
    )

    stages = ctx.repo.get(Round, ctx.round_id).metrics["stages"]
    assert stages["mlip"]["relaxed"] == 3 and stages["mlip"]["passed"] == 1
    assert (
        stages["mlip"]["pass_rate"] == pytest.approx(1 / 3)
        and stages["mlip"]["scheme"] == MLIP_SCHEME
    )
    assert (
        stages["dft"]["calls"] == 1
        and stages["dft"]["new_stable"] == 1
        and stages["dft"]["stable_share"] == 1.0
    )


def test_a_single_stage_round_skips_the_mlip_steps_and_relaxes_the_selection(
    tmp_path, engines, monkeypatch
):
    from gnomon.campaign.steps import relaxation

    relaxed = []
    monkeypatch.setattr(
        relaxation, "relax_with", lambda ctx, ids, engine: relaxed.append((ids, engine)) or {}
    )
    ctx = _context(tmp_path / "home", engines, stages=["screen", "dft"])
    try:
        run_step(ctx, "select", lambda _ctx: {"policy": "test", "selected": ["a", "b"]})
        for step in (*THROUGH_MLIP, "relax"):
            run_step(ctx, step, STEP_FUNCTIONS[step])
        assert all("skipped" in ctx.outputs(s) for s in THROUGH_MLIP)
        assert relaxed == [(["a", "b"], engines["dft"])]
        assert ctx.stage_engines() == {"dft": engines["dft"]}
    finally:
        ctx.close()


def test_a_round_stored_before_the_stage_steps_is_still_finished():
    old = {s: StepState.done for s in STEPS if s not in STAGE_STEPS}
    assert round_finished(Round(id="t:0", campaign="t", index=0, steps=old))
    fresh = {**old, "mlip_gate": StepState.pending}
    assert not round_finished(Round(id="t:0", campaign="t", index=0, steps=fresh))


def test_stage_config_is_validated():
    base = {"name": "c", "elements": ["Si", "C"]}
    assert CampaignConfig(**base).stages == ["screen", "dft"] and not CampaignConfig(**base).staged
    staged = CampaignConfig(**base, stages=["screen", "mlip", "dft"], engine={"name": "qe"})
    assert (
        staged.staged
        and staged.mlip_e_above_hull == 0.1
        and mlip_engine_name(staged.mlip_engine.name) == "mlip"
    )
    for bad in (
        {"stages": ["mlip", "dft"]},
        {"stages": ["screen", "dft", "mlip"]},
        {"mlip_engine": "no-such-potential"},
        {"mlip_e_above_hull": -0.1},
    ):
        with pytest.raises(ValueError):
            CampaignConfig(**base, **bad)


def test_fill_and_dft_budget_without_an_mlip_stage_are_refused_in_one_line():
    with pytest.raises(ValueError, match="mlip_fill set, but there is no mlip stage"):
        CampaignConfig(name="x", elements=["Li", "O"], mlip_fill=2)
    with pytest.raises(ValueError, match="mlip_dft_budget set, but there is no mlip stage"):
        CampaignConfig(name="x", elements=["Li", "O"], mlip_dft_budget=3)
    with pytest.raises(ValueError, match="mlip_unscreened set, but there is no mlip stage"):
        CampaignConfig(name="x", elements=["Li", "O"], mlip_unscreened=5)
    staged = CampaignConfig(name="x", elements=["Li", "O"], stages=["screen", "mlip", "dft"],
                            mlip_fill=2, mlip_dft_budget=3)
    assert staged.mlip_fill == 2 and staged.mlip_dft_budget == 3


def test_one_scheme_for_both_stages_is_refused(tmp_path, engines):
    from gnomon.campaign.steps import StepError

    ctx = _context(tmp_path / "home", {"mlip": engines["dft"], "dft": engines["dft"]})
    try:
        with pytest.raises(StepError, match="hull of its own"):
            ctx.stage_engines()
    finally:
        ctx.close()


def test_the_relaxation_budget_of_a_staged_campaign_counts_its_dft_relaxations(tmp_path):
    from gnomon.flows.campaign import should_stop
    from gnomon.storage import open_repository

    settings = Settings(home=tmp_path / "home")
    config = CampaignConfig(
        name="budget",
        elements=["Mg", "Si"],
        stages=["screen", "mlip", "dft"],
        engine={"name": "qe"},
        stopping={"max_relaxations": 2},
    )

    def calc(i: int, scheme: str) -> Calculation:
        return Calculation(
            id=f"c{i}:{scheme}",
            candidate_id=f"c{i}",
            engine=scheme.split("-")[0],
            scheme=scheme,
            settings_hash=scheme,
            campaign="budget",
        )

    with open_repository(settings.db_url) as repo:
        repo.insert_new(
            "calculations", [calc(i, MLIP_SCHEME) for i in range(3)] + [calc(0, "qe-pbe-pslibrary")]
        )
    assert should_stop(settings, config, 1) is None  # 3 mlip relaxations, 1 DFT
    with open_repository(settings.db_url) as repo:
        repo.insert_new("calculations", [calc(1, "qe-pbe-pslibrary")])
    assert "relaxation budget reached (2 >= 2)" in should_stop(settings, config, 1)


def _calibration_file(path: Path, shift: float) -> Path:
    """A stored calibration of the mlip scheme into the dft scheme: every element's reference
    ``shift`` eV/atom up, no slope."""
    fit = Calibration(MLIP_SCHEME, DFT_SCHEME, mu={"Li": shift, "O": shift}, n_entries=12,
                      systems=["Li-O"], excluded=["Li-S"])
    path.write_text(json.dumps(fit.as_dict()))
    return path


@pytest.mark.slow
def test_a_calibrated_gate_reads_the_calibrated_energies_on_the_campaigns_hull(
    tmp_path, engines
):
    """The mlip hull holds LiO and Li2O back (0.3 and 0.133 eV/atom above it); calibrated into
    the dft scheme (-1.2 + 0.25 eV/atom, on a dft hull of Li and O at -1 eV/atom and nothing
    between) every candidate lies 0.05 above the campaign's hull, and all three go on. With
    references 0.35 up they lie 0.15 above it, and none does, Li3O included, which the mlip
    hull would have passed."""
    home = tmp_path / "home"
    ctx = _context(home, engines, mlip_calibrate=True,
                   mlip_calibration=_calibration_file(tmp_path / "near.json", 0.25))
    try:
        candidates = _through_select(ctx)
        for step in THROUGH_MLIP:
            run_step(ctx, step, STEP_FUNCTIONS[step])
        gate = ctx.outputs("mlip_gate")
        assert gate["held_back"] == {} and len(gate["passed"]) == 3
        assert gate["calibration"]["fit"]["mu"] == {"Li": 0.25, "O": 0.25}
        # the mlip scheme's own figures are still recorded beside the calibrated ones
        assert sorted(gate["calibration"]["mlip_e_above_hull"].values()) == pytest.approx(
            [0.05, 0.2 / 1.5, 0.3])
        dft_hull = PhaseDiagram([PDEntry("Li", -1.0), PDEntry("O", -1.0)])
        for cid in gate["passed"]:
            child = ctx.repo.get(Candidate, cid)
            cell = Structure.from_dict(child.structure).composition
            expected = dft_hull.get_e_above_hull(PDEntry(cell, -0.95 * cell.num_atoms),
                                                 allow_negative=True)
            assert child.extra["e_above_hull"] == pytest.approx(expected) == pytest.approx(0.05)
        assert {ctx.repo.get(Candidate, c).parent_candidate_id for c in gate["passed"]} == {
            c.id for c in candidates.values()}
    finally:
        ctx.close()
    far = _context(home, engines, mlip_calibrate=True,
                   mlip_calibration=_calibration_file(tmp_path / "far.json", 0.35))
    try:
        gate = mlip_gate(far)
        assert gate["passed"] == []
        assert sorted(gate["held_back"].values()) == pytest.approx([0.15] * 3)
    finally:
        far.close()


def test_a_calibrated_gate_without_enough_pairs_falls_back_to_the_mlip_hull_and_says_so(
    tmp_path, engines
):
    from gnomon.campaign.steps.stages import gate_values

    ctx = _context(tmp_path / "home", engines, mlip_calibrate=True)
    try:
        values, record = gate_values(ctx, [], {})
        assert values == {} and record["fit"] is None and "too few" in record["why"]
    finally:
        ctx.close()


# -- the replay's stage hook (gnomon.campaign.simulate): what bench/funnel.py's arms use ------
def _labelled(key: str, formula: str, energy_per_atom: float):
    from pymatgen.core import Composition

    from gnomon.campaign.simulate import Labelled

    comp = Composition(formula)
    species = [str(el) for el in comp for _ in range(int(comp[el]))]
    coords = [[i / len(species)] * 3 for i in range(len(species))]
    s = Structure(Lattice.cubic(3.0 * len(species)), species, coords)
    return Labelled(key, s, energy_per_atom, comp.reduced_formula, comp.chemical_system)


def _replay_pool() -> list:
    """Li and O at -1 eV/atom; four LiO candidates, two of them below the Li-O tie-line."""
    return [_labelled("Li", "Li", -1.0), _labelled("O", "O", -1.0),
            _labelled("deep", "LiO", -1.4), _labelled("low", "LiO", -1.2),
            _labelled("flat", "LiO", -1.0), _labelled("high", "LiO", -0.8)]


def test_a_stage_alone_ranks_the_replay_and_what_it_leaves_out_is_never_picked():
    from gnomon.campaign.selection import Scored
    from gnomon.campaign.simulate import simulate

    truth = {it.key: it.energy_per_atom for it in _replay_pool()}
    seen = []

    def ceiling(known, candidates, scored, r):
        seen.append((r, scored, sorted(k.key for k in known)))
        return [Scored(it.key, truth[it.key], 0.0, it.reduced_formula) for it in candidates]

    r = simulate(_replay_pool(), "greedy", rounds=2, budget=1, initial=0, stage=ceiling,
                 screen=False)
    assert r.picked == [["deep"], ["low"]] and r.stable_found == [1, 1]
    # no model ranked anything; the stage saw the hull before each round
    assert [s for _, s, _ in seen] == [None, None] and "deep" in seen[1][2]

    def gate(known, candidates, scored, r):  # hands on only what lies below -1.1 eV/atom
        return [Scored(it.key, truth[it.key], 0.0, it.reduced_formula) for it in candidates
                if truth[it.key] < -1.1]

    gated = simulate(_replay_pool(), "greedy", rounds=3, budget=3, initial=0, stage=gate,
                     screen=False)
    assert gated.picked[0] == ["deep", "low"] and gated.evaluations[-1] == 2


def _select_for_fill(ctx: StagedContext, selected: list[str], reserve: list[str],
                     unscreened: tuple[str, ...] = ()) -> dict:
    """References, the deep LiO of the mlip hull and the three candidates (see
    :func:`_through_select`), the selection, its reserve and the unscreened candidates drawn
    beside it named here (by formula)."""
    run_step(ctx, "references", STEP_FUNCTIONS["references"])
    HullEngine(ctx.repo).ingest([make_entry("LiO", -1.5 * 2, MLIP_SCHEME, source="imported")])
    candidates = _candidates()
    ctx.repo.add_candidates(list(candidates.values()))
    for step in ("generate", "dedup", "screen"):
        run_step(ctx, step, lambda _ctx: {})
    run_step(ctx, "select", lambda _ctx: {
        "policy": "test", "selected": [candidates[f].id for f in selected],
        "reserve": [candidates[f].id for f in reserve],
        "unscreened": [candidates[f].id for f in unscreened]})
    return candidates


def _mlip_relaxed(ctx: StagedContext) -> list[str]:
    return sorted(ctx.repo.get(Candidate, c.candidate_id).reduced_formula
                  for c in ctx.repo.query(Calculation, {"scheme": MLIP_SCHEME})
                  if c.candidate_id in {x.id for x in _candidates().values()})


def test_a_filling_stage_relaxes_the_reserve_until_the_dft_stage_has_enough_and_no_further(
    tmp_path, engines
):
    # budget 1: LiO (0.3 above the mlip hull) is selected and fails the 0.1 gate; the reserve
    # holds Li2O (0.133: fails) then Li3O (0.05: passes), so the stage relaxes all three
    ctx = _context(tmp_path / "a", engines, mlip_fill=2, selection={"budget": 1})
    try:
        _select_for_fill(ctx, ["LiO"], ["Li2O", "Li3O"])
        out = run_step(ctx, "mlip_relax", STEP_FUNCTIONS["mlip_relax"])
        assert out["filled"]["chunks"] == 3 and out["filled"]["wanted"] == 1
        assert _mlip_relaxed(ctx) == ["Li2O", "Li2O2", "Li3O"]  # pymatgen's LiO: Li2O2
        attempts = {c.id: c.attempts for c in ctx.repo.query(Calculation)}
        assert STEP_FUNCTIONS["mlip_relax"](ctx) == out  # a rerun: the same chunks, re-attached
        assert {c.id: c.attempts for c in ctx.repo.query(Calculation)} == attempts
        for step in ("mlip_ingest", "mlip_gate"):
            run_step(ctx, step, STEP_FUNCTIONS[step])
        (passed,) = ctx.outputs("mlip_gate")["passed"]
        assert ctx.repo.get(Candidate, passed).reduced_formula == "Li3O"
    finally:
        ctx.close()
    # the reserve the other way round: Li3O passes at the second chunk, Li2O is never relaxed
    ctx = _context(tmp_path / "b", engines, mlip_fill=2, selection={"budget": 1})
    try:
        _select_for_fill(ctx, ["LiO"], ["Li3O", "Li2O"])
        out = run_step(ctx, "mlip_relax", STEP_FUNCTIONS["mlip_relax"])
        assert out["filled"]["chunks"] == 2 and _mlip_relaxed(ctx) == ["Li2O2", "Li3O"]
    finally:
        ctx.close()
    # without mlip_fill the reserve is never touched
    ctx = _context(tmp_path / "c", engines, selection={"budget": 1})
    try:
        _select_for_fill(ctx, ["LiO"], ["Li3O", "Li2O"])
        out = run_step(ctx, "mlip_relax", STEP_FUNCTIONS["mlip_relax"])
        assert "filled" not in out and _mlip_relaxed(ctx) == ["Li2O2"]
    finally:
        ctx.close()


def test_the_dft_budget_takes_the_entries_nearest_the_hull_and_holds_back_the_rest(
    tmp_path, engines
):
    # at 0.2 eV/atom Li3O (0.05) and Li2O (0.133) pass the gate; a dft budget of 1 takes Li3O
    ctx = _context(tmp_path, engines, mlip_e_above_hull=0.2, mlip_dft_budget=1)
    try:
        _select_for_fill(ctx, ["LiO", "Li2O", "Li3O"], [])
        for step in THROUGH_MLIP:
            run_step(ctx, step, STEP_FUNCTIONS[step])
        gate = ctx.outputs("mlip_gate")
        (passed,) = gate["passed"]
        assert ctx.repo.get(Candidate, passed).reduced_formula == "Li3O"
        (over,) = gate["over_dft_budget"]
        assert ctx.repo.get(Entry, over).reduced_formula == "Li2O"
        assert gate["held_back"][over] == pytest.approx(0.2 / 1.5)
    finally:
        ctx.close()


def test_the_reserve_is_the_policys_next_picks_and_leaves_the_selection_as_it_was(
    tmp_path, engines
):
    from gnomon.campaign.selection import Scored, selection_policy
    from gnomon.campaign.steps.selecting import reserve

    ctx = _context(tmp_path, engines, mlip_fill=2,
                   selection={"budget": 2, "policy": "greedy", "exploration": 0.0})
    try:
        scored = [Scored(f"c{i}", 0.01 * (9 - i), 0.0, f"g{i}") for i in range(10)]
        chosen = [c.candidate_id for c in selection_policy(ctx.config).select(scored)]
        assert chosen == ["c9", "c8"]  # the selection: the budget's best
        assert reserve(ctx, scored, chosen, None) == ["c7", "c6", "c5", "c4"]  # 2 x budget more
    finally:
        ctx.close()


def test_candidates_the_screen_could_not_judge_are_relaxed_beside_the_selection(
    tmp_path, engines
):
    from gnomon.campaign.selection import Scored
    from gnomon.campaign.steps.selecting import unscreened

    ctx = _context(tmp_path, engines, mlip_unscreened=2)
    try:
        scored = [Scored("a", 0.1), Scored("b", None), Scored("c", None), Scored("d", None),
                  Scored("e", -0.2)]
        drawn = unscreened(ctx, scored, chosen=["e", "c"])
        assert len(drawn) == 2 and set(drawn) <= {"b", "d"}  # unjudged, never the selection's
        assert unscreened(ctx, scored, chosen=["e"]) == unscreened(ctx, scored, chosen=["e"])
        # the stage relaxes the drawn ones with the selection, and the gate judges them alike:
        # LiO (0.3 above the mlip hull) is selected, Li3O (0.05) came in unjudged
        _select_for_fill(ctx, ["LiO"], [], unscreened=("Li3O",))
        for step in THROUGH_MLIP:
            run_step(ctx, step, STEP_FUNCTIONS[step])
        assert _mlip_relaxed(ctx) == ["Li2O2", "Li3O"]
        (passed,) = ctx.outputs("mlip_gate")["passed"]
        assert ctx.repo.get(Candidate, passed).reduced_formula == "Li3O"
    finally:
        ctx.close()
