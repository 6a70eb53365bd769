"""Prefect wiring of one round: each step a task, retried with backoff on transient failure.

Tasks receive plain settings/config dicts and a round index, so they run the same in a
thread, a Dask worker process or on another machine. Each finds the database through
:func:`~gnomon.flows.connections.process_repository`: in the flow's process the repository
the flow holds, elsewhere one opened once for that process. The fan-out of the round
(in-process or the campaign's Dask cluster) is handed to the steps with the context. The flow
keeps no state of its own: ``run_step`` reads and writes the Round document.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from prefect import flow, task
from prefect.tasks import exponential_backoff

from gnomon.campaign import steps
from gnomon.campaign.round_steps import steps_that_apply
from gnomon.config import CampaignConfig
from gnomon.flows.connections import held_repository, process_repository
from gnomon.flows.database import settings_from_payload
from gnomon.flows.fanout import fan_out

log = logging.getLogger(__name__)


def _transient(_task: Any, _run: Any, state: Any) -> bool:
    """Whether a failed task is worth retrying: storage hiccups and lost connections, not bad
    input."""
    return not isinstance(_exception(state), steps.StepError | ValueError)


RETRY = dict(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
             retry_condition_fn=_transient)


def _exception(state: Any) -> BaseException | None:
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - inspected, not swallowed: decides a retry
        return exc
    return None


def context(settings: dict[str, Any], config: dict[str, Any], index: int) -> steps.RoundContext:
    """The round's context in this process: its repository opened once here, its fan-out."""
    s = settings_from_payload(settings)
    cfg = CampaignConfig.model_validate(config)
    return steps.RoundContext(s, cfg, index, repository=process_repository(s.db_url),
                              fan_out=fan_out(cfg, s))


@task(name="step", task_run_name="r{index}-{step}", **RETRY)
def step_task(step: str, settings: dict[str, Any], config: dict[str, Any],
              index: int) -> dict[str, Any]:
    ctx = context(settings, config, index)
    return steps.run_step(ctx, step, steps.STEP_FUNCTIONS[step])


@task(name="generate", task_run_name="r{index}-generate-{generator}", **RETRY)
def generate_task(generator: str, settings: dict[str, Any], config: dict[str, Any],
                  index: int) -> dict[str, Any]:
    ctx = context(settings, config, index)
    if ctx.round().steps.get("generate") == "done":
        return ctx.outputs("generate").get(generator, {})
    with warnings.catch_warnings():
        # pymatgen warns once per species lacking a tabulated ionic radius; thousands of
        # identical lines bury the flow's log without telling a user anything new
        warnings.filterwarnings("ignore", message=".*ionic radius.*")
        return steps.GENERATORS[generator](ctx)


@task(name="record-generate", task_run_name="r{index}-generate")
def record_generate(outputs: dict[str, Any], settings: dict[str, Any], config: dict[str, Any],
                    index: int) -> dict[str, Any]:
    ctx = context(settings, config, index)
    return steps.run_step(ctx, "generate", lambda _ctx: outputs)


@flow(name="gnomon-round", flow_run_name="{config[name]}-round-{index}")
def round_flow(settings: dict[str, Any], config: dict[str, Any], index: int) -> dict[str, Any]:
    """The steps of ``steps.STEPS`` in order, the generators side by side; returns the metrics.

    The flow holds the database open for its run (unless its campaign flow already does), so
    the tasks that run in this process share one repository. A step that does not apply to
    the campaign (the fidelity stages without an mlip stage) is recorded here, not run as a
    task: nothing in Prefect's log or UI says it ran."""
    outputs: dict[str, dict[str, Any]] = {}
    applies = steps_that_apply(CampaignConfig.model_validate(config))
    with held_repository(settings_from_payload(settings).db_url):
        for step in steps.STEPS:
            if step not in applies:
                ctx = context(settings, config, index)
                outputs[step] = steps.run_step(ctx, step, steps.STEP_FUNCTIONS[step])
            elif step == "generate":
                futures = {g: generate_task.submit(g, settings, config, index)
                           for g in steps.GENERATORS}
                outputs[step] = record_generate({g: f.result() for g, f in futures.items()},
                                                settings, config, index)
            else:
                outputs[step] = step_task(step, settings, config, index)
    return outputs["metrics"]
