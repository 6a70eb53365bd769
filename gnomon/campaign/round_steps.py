"""The steps a round records, in the order they run, under the names they have had.

A Round document keeps one state and one output record per step name. This is what reading
such a record needs (``gnomon campaign status``, a resumed campaign), apart from the steps
themselves (:mod:`gnomon.campaign.steps`, which map each name to its function).
"""

from __future__ import annotations

from typing import Any

from gnomon.config import CampaignConfig
from gnomon.storage import Round, StepState

#: The steps of a round, in the order they run.
STEPS: tuple[str, ...] = (
    "references", "generate", "dedup", "screen", "select", "mlip_relax", "mlip_ingest",
    "mlip_gate", "relax", "ingest", "metrics", "retrain", "report",
)
# Steps renamed since rounds were first stored: a resumed round reads its old records under
# the new names ("hull" only ever computed the round's metrics against the hull).
LEGACY_STEP_NAMES = {"hull": "metrics"}
# Steps added with the fidelity stages: a round stored before them has none and is finished
# without them (they would have done nothing in its single-stage campaign).
STAGE_STEPS = ("mlip_relax", "mlip_ingest", "mlip_gate")


def steps_that_apply(config: CampaignConfig) -> tuple[str, ...]:
    """The steps that do work in a round of ``config``: the fidelity stages only where it has
    an mlip stage. The others are still recorded done (so a round reads the same whatever its
    campaign), but are neither run as a task nor counted or shown as progress."""
    return tuple(s for s in STEPS if config.staged or s not in STAGE_STEPS)


def step_states(record: Round) -> dict[str, str]:
    """The record's step states as plain strings, ready to store."""
    return {k: StepState(v).value for k, v in record.steps.items()}


def _renamed(mapping: dict[str, Any]) -> dict[str, Any]:
    return {LEGACY_STEP_NAMES.get(k, k): v for k, v in mapping.items()}


def has_legacy_names(record: Round) -> bool:
    return any(old in record.steps or old in record.outputs for old in LEGACY_STEP_NAMES)


def with_current_step_names(record: Round) -> Round:
    """``record`` with steps and outputs stored under a legacy name moved to the current one."""
    return record.model_copy(update={"steps": _renamed(record.steps),
                                     "outputs": _renamed(record.outputs)})


def round_finished(record: Round | None) -> bool:
    """Whether every step of a stored round is done, whichever names it was stored under."""
    if record is None:
        return False
    steps = with_current_step_names(record).steps
    return all(steps.get(s) == StepState.done for s in STEPS if s in steps or s not in STAGE_STEPS)
