"""Campaigns start from the pretrained model: round 0 is screened by it (or by its transfer to the
campaign's scheme), the round's retrain fine-tunes it, and the report says so. Steps run with
the instant fake engine; the pretrained model is a tiny one `gnomon model pretrain` trains on a toy
world, put where the package data would be."""

from __future__ import annotations

from functools import cached_property

import pytest

from gnomon.campaign.steps import STEP_FUNCTIONS, RoundContext, run_step, screening_model
from gnomon.config import CampaignConfig, Settings
from gnomon.models import pretrained
from gnomon.storage import ModelVersion
from tests.models.pretrained_toy import run_pretrain, write_toy_world

VERSION = "pretrained-mlip-chgnet-0.3.0-v1"


class FakeEngineContext(RoundContext):
    fake = None

    @cached_property
    def engine(self):
        return self.fake


@pytest.fixture(scope="module")
def toy_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained-toy")
    return run_pretrain(write_toy_world(folder / "world"), folder / "pretrained")


@pytest.fixture
def shipped(toy_model_dir, monkeypatch):
    monkeypatch.setattr(pretrained, "package_dir", lambda: toy_model_dir)


def _context(tmp_path, engine, index: int = 0, **model) -> RoundContext:
    cfg = CampaignConfig(
        name="start-test",
        elements=["Li", "O"],
        known_phases=False,
        saps={"max_candidates": 6, "max_template_sites": 4, "max_per_template": 3},
        random_search={"enabled": False},
        model={"ensemble_size": 2, "max_epochs": 1, "patience": 1, "min_entries": 2, **model},
        selection={"policy": "greedy", "budget": 3, "exploration": 0.0},
        dispatch={"name": "local", "workers": 1, "pack": 8, "poll_interval": 0.2},
    )
    ctx = FakeEngineContext(Settings(home=tmp_path / "home"), cfg, index)
    ctx.fake = engine
    return ctx


def _run(ctx: RoundContext, until: str) -> None:
    for step, fn in STEP_FUNCTIONS.items():
        run_step(ctx, step, fn)
        if step == until:
            return


def test_round_0_is_screened_by_the_pretrained_model_and_retrain_fine_tunes_it(
    shipped, tmp_path, fake_engine
):
    engine = fake_engine
    engine.scheme_name = "mlip-chgnet-0.3.0"  # the scheme the pretrained model predicts
    ctx = _context(tmp_path, engine)
    try:
        _run(ctx, until="report")
        out = ctx.round().outputs
        assert out["screen"]["model_version"] == VERSION and out["screen"]["screened"] > 0
        assert out["select"]["policy"] == "greedy"  # model-guided, not the random fallback
        assert ctx.round().metrics["model_version"] == VERSION
        child = ctx.repo.get(ModelVersion, out["retrain"]["model_version"])
        assert child.parent == VERSION and child.campaign == "start-test" and child.round == 0
        assert "transfer_from" not in child.config
        assert (
            child.config["train_systems"]
            == ctx.repo.get(ModelVersion, VERSION).config["train_systems"]
        )
        report = (ctx.settings.home / "reports" / "start-test" / "report.md").read_text()
        assert (
            f"round 0 screened by `{VERSION}`, the pretrained model shipped with gnomon" in report
        )
        nxt = _context(tmp_path, engine, index=1)
        try:
            assert screening_model(nxt).id == child.id  # round 1: the fine-tuned version
        finally:
            nxt.close()
    finally:
        ctx.close()


def test_another_scheme_starts_from_a_transfer_with_its_own_references(
    shipped, tmp_path, fake_engine
):
    ctx = _context(tmp_path, fake_engine)  # scheme mlip-fake-1
    try:
        _run(ctx, until="retrain")
        out = ctx.round().outputs
        start = ctx.repo.get(ModelVersion, out["screen"]["model_version"])
        assert start.scheme == "mlip-fake-1" and start.parent == VERSION
        assert start.config["transfer_from"] == VERSION and start.config["retrain"] == "transfer"
        assert start.config["references"]["pinned_by_elements"] == ["Li", "O"]
        child = ctx.repo.get(ModelVersion, out["retrain"]["model_version"])
        assert child.parent == start.id and child.config["transfer_from"] == VERSION
        assert child.scheme == "mlip-fake-1"
        # the hull of the fake scheme holds only its own entries
        assert {e.scheme for e in ctx.repo.entries(scheme="mlip-fake-1")} == {"mlip-fake-1"}
    finally:
        ctx.close()


def test_scratch_campaigns_never_screen_with_the_pretrained_model(shipped, tmp_path, fake_engine):
    fake_engine.scheme_name = "mlip-chgnet-0.3.0"
    ctx = _context(tmp_path, fake_engine, start_from="scratch")
    try:
        # in the database, but not to be used
        pretrained.ensure_registered(ctx.repo, ctx.settings.models_dir)
        _run(ctx, until="select")
        out = ctx.round().outputs
        assert out["screen"]["model_version"] is None and out["select"]["policy"] == "random"
    finally:
        ctx.close()
