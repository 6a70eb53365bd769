"""Prefect wiring of one round: each step a task, retried with backoff on transient failure.

Tasks receive plain settings/config dicts and a round index and open the database
themselves, so they run the same in a thread, a Dask worker process or on another machine.
The flow keeps no state of its own: ``run_step`` reads and writes the Round document.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from prefect import flow, task
from prefect.tasks import exponential_backoff

from gnomon.config import CampaignConfig
from gnomon.campaign import steps
from gnomon.flows.database import settings_from_payload

log = logging.getLogger(__name__)

# What is worth retrying: storage hiccups and lost connections, not bad input.
RETRY = dict(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
             retry_condition_fn=lambda task, run, state: not isinstance(_exception(state), steps.StepError | ValueError))


def _exception(state) -> BaseException | None:
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - inspected, not swallowed: decides a retry
        return exc
    return None


def context(settings: dict[str, Any], config: dict[str, Any], index: int) -> steps.RoundContext:
    return steps.RoundContext(settings_from_payload(settings), CampaignConfig.model_validate(config), index)


@task(name="step", task_run_name="r{index}-{step}", **RETRY)
def step_task(step: str, settings: dict[str, Any], config: dict[str, Any], index: int) -> dict[str, Any]:
    ctx = context(settings, config, index)
    try:
        return steps.run_step(ctx, step, steps.STEP_FUNCTIONS[step])
    finally:
        ctx.close()


@task(name="generate", task_run_name="r{index}-generate-{generator}", **RETRY)
def generate_task(generator: str, settings: dict[str, Any], config: dict[str, Any], index: int) -> dict[str, Any]:
    ctx = context(settings, config, index)
    try:
        if ctx.round().steps.get("generate") == "done":
            return ctx.outputs("generate").get(generator, {})
        with warnings.catch_warnings():
            # pymatgen warns once per species lacking a tabulated ionic radius; thousands of
            # identical lines bury the flow's log without telling a user anything new
            warnings.filterwarnings("ignore", message=".*ionic radius.*")
            return steps.GENERATORS[generator](ctx)
    finally:
        ctx.close()


@task(name="record-generate", task_run_name="r{index}-generate")
def record_generate(outputs: dict[str, Any], settings: dict[str, Any], config: dict[str, Any], index: int) -> dict[str, Any]:
    ctx = context(settings, config, index)
    try:
        return steps.run_step(ctx, "generate", lambda _ctx: outputs)
    finally:
        ctx.close()


@flow(name="gnomon-round", flow_run_name="{config[name]}-round-{index}")
def round_flow(settings: dict[str, Any], config: dict[str, Any], index: int) -> dict[str, Any]:
    """The steps of ``steps.STEPS`` in order, the generators side by side; returns the metrics."""
    outputs: dict[str, dict[str, Any]] = {}
    for step in steps.STEPS:
        if step == "generate":
            futures = {g: generate_task.submit(g, settings, config, index) for g in steps.GENERATORS}
            outputs[step] = record_generate({g: f.result() for g, f in futures.items()}, settings, config, index)
        else:
            outputs[step] = step_task(step, settings, config, index)
    return outputs["metrics"]
