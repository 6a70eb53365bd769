"""Round bookkeeping, metrics and reports, without running an engine."""

from __future__ import annotations

import pytest

from gnomon.campaign.reports import write_report
from gnomon.campaign.steps import STEPS, RoundContext, run_step
from gnomon.config import CampaignConfig, ConfigError, Settings, load_campaign
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.pipeline.thermo.metrics import e_above_previous_hull, round_metrics
from gnomon.storage import Prediction, Round, StepState


@pytest.fixture
def ctx(tmp_path):
    settings = Settings(home=tmp_path / "home")
    config = CampaignConfig(name="t", elements=["Li", "O"], engine={"name": "mlip"})
    c = RoundContext(settings, config, 0)
    yield c
    c.close()


def test_run_step_runs_once_and_stores_outputs(ctx):
    calls = []

    def work(c):
        calls.append(1)
        return {"value": 42}

    assert run_step(ctx, "generate", work) == {"value": 42}
    assert run_step(ctx, "generate", work) == {"value": 42}
    assert len(calls) == 1
    record = ctx.repo.get(Round, Round.key("t", 0))
    assert record.steps["generate"] == StepState.done
    assert record.steps["dedup"] == StepState.pending
    assert set(record.steps) == set(STEPS)


def test_a_failed_step_stays_unfinished_and_reruns(ctx):
    def boom(c):
        raise RuntimeError("node lost")

    with pytest.raises(RuntimeError):
        run_step(ctx, "relax", boom)
    assert ctx.repo.get(Round, Round.key("t", 0)).steps["relax"] == StepState.running
    assert run_step(ctx, "relax", lambda c: {"ok": True}) == {"ok": True}


def test_hit_rate_is_against_the_hull_before_the_round(tmp_path, sqlite_repo):
    engine = HullEngine(sqlite_repo)
    engine.ingest(
        [
            make_entry("Li", -2.0, "s"),
            make_entry("O2", -10.0, "s"),
            make_entry("Li2O", -15.0, "s", source="old"),
        ]
    )
    # this round: one compound below the old hull, one above; the first also lowers the hull
    below = make_entry("Li2O", -18.0, "s", source="new", candidate_id="c1")
    above = make_entry("LiO", -7.5, "s", source="new", candidate_id="c2")
    engine.ingest([below, above])
    prev = e_above_previous_hull(sqlite_repo, "s", [below, above])
    assert prev[below.id] == pytest.approx(-1.0)
    # old hull at LiO runs from Li2O (-5 eV/atom) to O (-5 eV/atom): -3.75 sits 1.25 above it
    assert prev[above.id] == pytest.approx(1.25)
    preds = {
        "c1": Prediction(
            id="c1:m",
            candidate_id="c1",
            model_version="m",
            scheme="s",
            energy_per_atom=-5.9,
            sigma=0.2,
        ),
        "c2": Prediction(
            id="c2:m",
            candidate_id="c2",
            model_version="m",
            scheme="s",
            energy_per_atom=-3.0,
            sigma=0.1,
        ),
    }
    m = round_metrics(sqlite_repo, "s", [below, above], preds, {"generated": 10}, failed=1)
    assert m["hit_rate"] == pytest.approx(0.5)
    assert m["new_stable"] == 1 and m["stable_vs_previous"] == 1
    assert m["mae"] == pytest.approx((abs(-5.9 + 6.0) + abs(-3.0 + 3.75)) / 2)
    assert m["sigma_coverage_1"] == pytest.approx(0.5)
    assert m["generated"] == 10 and m["failed"] == 1 and m["relaxed"] == 2


def test_report_has_metrics_table_curves_and_hull(ctx):
    engine = HullEngine(ctx.repo)
    scheme = ctx.scheme
    engine.ingest(
        [
            make_entry("Li", -1.9, scheme),
            make_entry("O2", -9.9, scheme),
            make_entry("Li2O", -14.5, scheme, candidate_id="x"),
        ]
    )
    for i in range(2):
        ctx.repo.put(
            [
                Round(
                    id=Round.key("t", i),
                    campaign="t",
                    index=i,
                    metrics={
                        "hit_rate": 0.2 * (i + 1),
                        "mae": 0.1 / (i + 1),
                        "generated": 5,
                        "policy": "random",
                    },
                )
            ]
        )
    path = write_report(ctx.repo, ctx.settings, ctx.config)
    text = path.read_text()
    assert "| 0 | random | 5 |" in text and "0.400" in text
    assert (path.parent / "metrics.png").stat().st_size > 1000
    assert (path.parent / "hull.png").stat().st_size > 1000
    assert "Li2O" in text


def test_campaign_config_errors_are_named(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("name: x\nelements: [Li, Qx]\n")
    with pytest.raises(ConfigError, match="Qx"):
        load_campaign(bad)
    bad.write_text("name: x\nelements: [Li]\nselection: {policy: clairvoyant}\n")
    with pytest.raises(ConfigError, match="policy"):
        load_campaign(bad)
    with pytest.raises(ConfigError, match="no such campaign file"):
        load_campaign(tmp_path / "missing.yaml")
    good = tmp_path / "ok.yaml"
    good.write_text("name: ok\nelements: [O, Li]\nrounds: 2\n")
    assert load_campaign(good).chemsys == "Li-O"


def test_quickstart_config_is_valid():
    from pathlib import Path

    cfg = load_campaign(Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml")
    assert cfg.engine.name == "mlip" and cfg.dispatch.name == "local" and cfg.rounds == 3
    assert cfg.chemsys == "Li-Mn-O"


def test_one_table_names_the_steps_in_order():
    from gnomon.campaign import steps

    assert STEPS == tuple(steps.STEP_FUNCTIONS)
    assert (
        STEPS[0] == "references"
        and STEPS[-1] == "report"
        and "metrics" in STEPS
        and "hull" not in STEPS
    )
    assert steps.generate.__name__ == steps.STEP_FUNCTIONS["generate"].__name__


def test_a_round_stored_under_the_old_step_name_resumes(ctx):
    from gnomon.campaign.steps import round_finished
    from gnomon.flows.campaign import round_done

    legacy = {s: StepState.done for s in STEPS if s != "metrics"} | {"hull": StepState.done}
    ctx.repo.put(
        [
            Round(
                id=Round.key("t", 0),
                campaign="t",
                index=0,
                steps=legacy,
                outputs={"hull": {"new_stable": 2}},
            )
        ]
    )
    assert round_done(ctx.settings, "t", 0)
    calls = []
    assert run_step(ctx, "metrics", lambda c: calls.append(1) or {}) == {"new_stable": 2}
    assert not calls  # done under its old name: not computed again
    record = ctx.repo.get(Round, Round.key("t", 0))
    assert record.steps["metrics"] == StepState.done and "hull" not in record.steps
    assert round_finished(record)
    half = {s: StepState.done for s in ("references", "generate")} | {"hull": StepState.pending}
    ctx.repo.put([Round(id=Round.key("t", 1), campaign="t", index=1, steps=half)])
    assert not round_done(ctx.settings, "t", 1)


def test_selection_takes_every_policy_argument_from_the_config():
    from dataclasses import fields

    from gnomon.campaign.selection import POLICIES, selection_policy

    selection = {
        "policy": "uncertainty",
        "budget": 7,
        "threshold": 0.02,
        "k": 2.5,
        "exploration": 0.3,
        "max_per_group": 1,
    }
    config = CampaignConfig(name="t", elements=["Li", "O"], seed=11, selection=selection)
    assert selection_policy(config).name == "uncertainty"
    for name in POLICIES:
        policy = selection_policy(config, name)
        assert policy.name == name and policy.seed == 11
        shared = {f.name for f in fields(policy)} & set(selection)
        assert shared >= {"budget", "exploration", "max_per_group"}
        for field in shared:
            expected = 1.0 if (name, field) == ("random", "exploration") else selection[field]
            assert getattr(policy, field) == expected, (name, field)
    with pytest.raises(ValueError, match="clairvoyant"):
        selection_policy(config, "clairvoyant")


def test_a_campaign_stored_before_an_option_existed_resumes_under_the_same_config(ctx):
    from gnomon.flows.campaign import CampaignError, register_campaign
    from gnomon.storage import Campaign

    stored = ctx.config.model_dump(mode="json")
    del stored["known_phases"]  # written by a gnomon without the option
    ctx.repo.put([Campaign(id="t", name="t", config=stored, status="stopped")])
    assert register_campaign(ctx.settings, ctx.config).status == "running"
    with pytest.raises(CampaignError, match="different configuration"):
        register_campaign(ctx.settings, ctx.config.model_copy(update={"seed": 99}))
