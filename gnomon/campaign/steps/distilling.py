"""Round 0's screen taught by a teacher first (``model.distill``).

Before the first oracle call, the campaign's universal potential (its ``mlip_engine``, which
is not the oracle) relaxes a seeded sample of round 0's unique candidates; its energies,
mapped into the campaign's scheme by the stored calibration (``mlip_calibration``: at round 0
the campaign has no pairs of its own to fit one), label the candidates' unrelaxed inputs, and
the start model is fine-tuned on them (:mod:`gnomon.campaign.distill`). The distilled model
is registered as the start model's child, so a resumed round finds it instead of paying the
teacher twice.
"""

from __future__ import annotations

import json
import logging
import random
import time

from pymatgen.core import Structure

from gnomon.campaign.distill import TeacherLabel, distill, teacher_samples
from gnomon.campaign.steps.context import RoundContext, StepError
from gnomon.dft.errors import RelaxationError
from gnomon.models.registry import ModelRegistry
from gnomon.models.spec import TrainConfig
from gnomon.pipeline.thermo.calibration import Calibration
from gnomon.storage import Candidate, ModelVersion

log = logging.getLogger(__name__)

RETRAIN_MODE = "distill"


def distilled(ctx: RoundContext, start: ModelVersion) -> ModelVersion:
    """``start`` distilled for this campaign (made once; found again on resume)."""
    for m in ctx.repo.query(ModelVersion, {"scheme": start.scheme, "kind": start.kind}):
        if m.parent == start.id and m.config.get("distilled_for") == ctx.campaign:
            return m
    path = ctx.config.mlip_calibration
    if path is None:
        raise StepError("model.distill needs mlip_calibration: a stored calibration of the "
                        "teacher's scheme into the campaign's")
    calibration = Calibration.from_dict(json.loads(path.read_text()))
    labels, failed = teacher_labels(ctx)
    samples = teacher_samples(labels, calibration)
    if not samples:
        log.warning("round %d: no teacher label the calibration covers; screening with %s",
                    ctx.index, start.id)
        return start
    registry = ModelRegistry(ctx.repo, ctx.settings.models_dir)
    cfg = ctx.config.model
    student = distill(registry.load(start), samples, TrainConfig(
        ensemble_size=cfg.ensemble_size, seed=ctx.seed("distill"), max_epochs=cfg.max_epochs,
        patience=cfg.patience, threads=1))
    record = registry.register(
        student, start.scheme, n_train=len(samples), parent=start.id, campaign=ctx.campaign,
        round=ctx.index, extra_config={
            "retrain": RETRAIN_MODE, "distilled_for": ctx.campaign,
            "teacher": ctx.mlip_engine.scheme, "labels": len(labels), "samples": len(samples),
            "teacher_failures": failed, "teacher_cpu_s": sum(lb.cpu_s for lb in labels),
            "calibration": calibration.as_dict()})
    log.info("round %d: %s distilled from %s on %d teacher labels (%s)", ctx.index, record.id,
             start.id, len(labels), ctx.mlip_engine.scheme)
    return record


def teacher_labels(ctx: RoundContext) -> tuple[list[TeacherLabel], dict[str, str]]:
    """The teacher's relaxations of ``model.distill`` of the round's unique candidates (a
    seeded draw); a relaxation that fails is recorded with its reason and taught nothing."""
    ids = sorted(ctx.outputs("dedup").get("unique", []))
    random.Random(ctx.seed("distill")).shuffle(ids)
    chosen = ids[: ctx.config.model.distill]
    teacher = ctx.mlip_engine
    labels, failed = [], {}
    for c in ctx.repo.query(Candidate, {"id": chosen}):
        structure = Structure.from_dict(c.structure)
        t0 = time.process_time()
        try:
            task = teacher.relax(structure, ctx.run_dir / "distill" / c.id)
        except RelaxationError as exc:
            failed[c.id] = str(exc)
            continue
        relaxed = Structure.from_dict(task.structure)
        labels.append(TeacherLabel(c.id, structure, task.energy / len(relaxed), relaxed,
                                   time.process_time() - t0))
    return labels, failed
