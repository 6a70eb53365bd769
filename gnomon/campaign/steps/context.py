"""What every step of a round shares: its context, ``run_step``, and lookups of its records.

Each step reads what earlier steps stored, does its work, and returns a small JSON-able
record of its outputs; :func:`run_step` stores that record and marks the step done on the
Round document in one write. A rerun after a crash skips every step marked done and repeats
the first unfinished one, which is written to be repeatable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from gnomon.campaign.fanout import IN_PROCESS, FanOut
from gnomon.campaign.round_steps import (
    STEPS,
    has_legacy_names,
    step_states,
    with_current_step_names,
)
from gnomon.config import CampaignConfig, Settings
from gnomon.dft import engine as dft_engine
from gnomon.dft.dispatcher import make_dispatcher
from gnomon.dft.engine import RelaxEngine
from gnomon.dft.service import Relaxations
from gnomon.pipeline.generation.streaming import derive_seed
from gnomon.storage import (
    CalcState,
    Calculation,
    Candidate,
    Repository,
    Round,
    StepState,
    open_repository,
)
from gnomon.storage.documents import utcnow

log = logging.getLogger(__name__)

Step = Callable[["RoundContext"], dict[str, Any]]


class StepError(RuntimeError):
    """A step cannot go on; the message says which step and why."""


@dataclass
class RoundContext:
    """Everything a step needs: where the data is and what the campaign asked for.

    ``repository`` is the open repository of ``settings.db_url`` when the caller has one (a
    flow opens it once per process and hands it to every step); without it the context opens
    its own on first use, and :meth:`close` closes only that one. ``fan_out`` is where the
    generators and the screen run (in-process unless a flow hands in its Dask fan-out).
    """

    settings: Settings
    config: CampaignConfig
    index: int
    repository: InitVar[Repository | None] = None
    fan_out: FanOut = field(default=IN_PROCESS, repr=False)
    _repo: Repository | None = field(default=None, init=False, repr=False)
    _owns_repo: bool = field(default=False, init=False, repr=False)

    def __post_init__(self, repository: Repository | None) -> None:
        self._repo = repository

    @property
    def campaign(self) -> str:
        return self.config.name

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            self._repo = open_repository(self.settings.db_url)
            self._owns_repo = True
        return self._repo

    @cached_property
    def engine(self) -> RelaxEngine:
        return dft_engine.make_engine(self.config.engine.name, self.settings,
                                      **self.config.engine.options)

    @property
    def scheme(self) -> str:
        """The scheme of the campaign's engine (the last stage): its hull, its model."""
        return self.engine.scheme

    @cached_property
    def mlip_engine(self) -> RelaxEngine:
        """The universal potential of the mlip stage (config ``mlip_engine``)."""
        return dft_engine.make_engine(self.config.mlip_engine.name, self.settings,
                                      **self.config.mlip_engine.options)

    def stage_engines(self) -> dict[str, Any]:
        """The engine of each relaxing stage, in order: ``{"mlip": ..., "dft": ...}`` or
        ``{"dft": ...}``."""
        if not self.config.staged:
            return {"dft": self.engine}
        if self.mlip_engine.scheme == self.engine.scheme:
            raise StepError(f"stages: mlip_engine {self.config.mlip_engine.name!r} and engine "
                            f"{self.config.engine.name!r} share the scheme {self.engine.scheme}; "
                            "each stage needs a hull of its own")
        return {"mlip": self.mlip_engine, "dft": self.engine}

    @property
    def run_dir(self) -> Path:
        return self.settings.runs_dir / self.campaign / f"round-{self.index:03d}"

    @property
    def round_id(self) -> str:
        return Round.key(self.campaign, self.index)

    def seed(self, *keys: object) -> int:
        return derive_seed(self.config.seed, self.index, *keys) % (2**31)

    def round(self) -> Round:
        """This round's record (created on first use), with legacy step names migrated."""
        record = self.repo.get(Round, self.round_id)
        if record is None:
            record = Round(id=self.round_id, campaign=self.campaign, index=self.index,
                           steps={s: StepState.pending for s in STEPS})
            self.repo.insert_new("rounds", [record])
            record = self.repo.get(Round, self.round_id)
        if has_legacy_names(record):
            record = with_current_step_names(record)
            self.repo.update_fields("rounds", self.round_id,
                                    {"steps": step_states(record), "outputs": record.outputs})
        return record

    def outputs(self, step: str) -> dict[str, Any]:
        return self.round().outputs.get(step, {})

    def relaxations(self) -> Relaxations:
        dispatch = self.config.dispatch
        dispatcher = make_dispatcher(dispatch.name, self.settings, workers=dispatch.workers)
        return Relaxations(self.repo, self.settings.runs_dir / self.campaign,
                           {dispatch.name: dispatcher},
                           max_retries=self.settings.slurm.max_retries, pack=dispatch.pack,
                           limits=self.settings.relax_limits)

    def close(self) -> None:
        """Close the repository this context opened itself (never one handed in)."""
        if self._repo is not None and self._owns_repo:
            self._repo.close()
            self._repo = None
            self._owns_repo = False


def run_step(ctx: RoundContext, step: str, fn: Step) -> dict[str, Any]:
    """Run ``fn`` unless ``step`` is already done; store its outputs and mark it done."""
    record = ctx.round()
    if record.steps.get(step) == StepState.done:
        log.info("round %d: %s already done", ctx.index, step)
        return record.outputs.get(step, {})
    ctx.repo.update_fields("rounds", ctx.round_id,
                           {"steps": {**step_states(record), step: StepState.running.value}})
    outputs = fn(ctx)
    record = ctx.round()
    ctx.repo.update_fields(
        "rounds",
        ctx.round_id,
        {
            "steps": {**step_states(record), step: StepState.done.value},
            "outputs": {**record.outputs, step: outputs},
            **({"finished_at": utcnow().isoformat()} if step == STEPS[-1] else {}),
        },
    )
    log.info("round %d: %s done", ctx.index, step)
    return outputs


def round_candidate_ids(ctx: RoundContext) -> set[str]:
    """Ids of the generated candidates stored for this round (not references or known phases):
    what an interrupted run of the dedup step already stored."""
    stored = ctx.repo.query(Candidate, {"campaign": ctx.campaign, "round": ctx.index})
    return {c.id for c in stored if c.generator not in ("reference", "known")}


def calculation(ctx: RoundContext, candidate_id: str,
                engine: RelaxEngine | None = None) -> Calculation | None:
    """The calculation of ``candidate_id`` by ``engine`` (default: the campaign's engine)."""
    settings_hash = (engine or ctx.engine).settings_hash
    return ctx.repo.get(Calculation, Calculation.key(candidate_id, settings_hash))


def relaxed(ctx: RoundContext, candidate_id: str, engine: RelaxEngine | None = None) -> bool:
    """Whether ``engine`` (default: the campaign's) has finished relaxing ``candidate_id``."""
    calc = calculation(ctx, candidate_id, engine)
    return calc is not None and calc.state is CalcState.done
