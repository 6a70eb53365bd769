"""Round 0 screened by a model the campaign's teacher taught first (``model.distill``)."""

from __future__ import annotations

import pytest

from gnomon.campaign.steps import STEP_FUNCTIONS, run_step
from gnomon.campaign.steps.distilling import distilled
from gnomon.config import CampaignConfig
from gnomon.models.registry import ModelRegistry
from gnomon.models.training import Trainer
from gnomon.storage import ModelVersion
from tests.flows.test_stages import (  # noqa: F401  (engines: the fixture)
    DFT_SCHEME,
    _calibration_file,
    _candidates,
    _context,
    engines,
)
from tests.models.conftest import TINY_SPEC, tiny_config, toy_samples


def _start_model(ctx) -> ModelVersion:
    """The campaign's start: a tiny ensemble of its scheme trained before it."""
    result = Trainer(TINY_SPEC, tiny_config(ensemble_size=2)).fit(toy_samples(32))
    return ModelRegistry(ctx.repo, ctx.settings.models_dir).register(result.ensemble, DFT_SCHEME)


def test_round0_is_screened_by_the_start_model_distilled_on_the_teachers_labels(
        tmp_path, engines):  # noqa: F811
    ctx = _context(tmp_path / "home", engines, stages=["screen", "mlip", "dft"],
                   model={"start_from": "scratch", "distill": 2, "max_epochs": 2},
                   mlip_calibration=_calibration_file(tmp_path / "cal.json", 0.25))
    try:
        start = _start_model(ctx)
        candidates = list(_candidates().values())
        ctx.repo.add_candidates(candidates)
        for step in ("references", "generate"):
            run_step(ctx, step, lambda _ctx: {})
        run_step(ctx, "dedup", lambda _ctx: {"unique": [c.id for c in candidates]})
        out = run_step(ctx, "screen", STEP_FUNCTIONS["screen"])
        student = ctx.repo.get(ModelVersion, out["model_version"])
        assert student.parent == start.id and student.id != start.id
        cfg = student.config
        assert cfg["retrain"] == "distill" and cfg["distilled_for"] == ctx.campaign
        assert cfg["labels"] == 2 and cfg["teacher"] == engines["mlip"].scheme
        assert cfg["calibration"]["mu"] == {"Li": 0.25, "O": 0.25}
        # the teacher relaxed two candidates of the round, each in its own folder
        assert len(list((ctx.run_dir / "distill").iterdir())) == 2
        assert out["screened"] == len(candidates)
        # a resumed round finds the distilled model again: the teacher is not paid twice
        assert distilled(ctx, start).id == student.id
    finally:
        ctx.close()


def test_distilling_without_a_stored_calibration_is_refused_up_front():
    with pytest.raises(ValueError, match="model.distill needs mlip_calibration"):
        CampaignConfig(name="x", elements=["Li", "O"], model={"distill": 4})
