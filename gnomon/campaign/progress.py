"""Where a running campaign stands, read from its records: what a progress display shows.

Every step marks itself running and then done on its Round, and every relaxation is a
Calculation of its campaign and round, so a display needs no hook into the flow, nor into
the processes or machines its tasks run on: it reads those records every second or so
(:class:`ProgressReader`), and :func:`events` says what changed between two readings, one
line per event, for output that is not a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

from gnomon.campaign.round_steps import round_finished, steps_that_apply, with_current_step_names
from gnomon.config import CampaignConfig
from gnomon.plural import counted
from gnomon.storage import CalcState, Repository, Round, StepState

#: states a relaxation does not leave
FINISHED_STATES = [CalcState.done.value, CalcState.failed.value, CalcState.cancelled.value]


@dataclass(frozen=True)
class Standing:
    """The campaign at one reading: rounds finished of those asked for, and the round under
    way (``round`` None once all are finished): its steps done and running, its relaxations."""

    rounds_done: int
    rounds_total: int
    round: int | None
    steps_done: tuple[str, ...] = ()
    step: str | None = None
    steps_total: int = 0
    relaxations_done: int = 0
    relaxations_total: int = 0

    @property
    def finished(self) -> bool:
        return self.round is None


class ProgressReader:
    """Reads the :class:`Standing` of one campaign's rounds ``0..rounds_total-1``.

    A finished round stays finished, so each is read once after it finishes; a reading costs
    the round under way and two counts of its relaxations.
    """

    def __init__(self, repo: Repository, config: CampaignConfig, rounds_total: int) -> None:
        self.repo, self.config, self.rounds_total = repo, config, rounds_total
        self.steps = steps_that_apply(config)
        self._finished: set[int] = set()

    def read(self) -> Standing:
        index, record = 0, None
        while index < self.rounds_total:
            if index not in self._finished:
                record = self.repo.get(Round, Round.key(self.config.name, index))
                if not round_finished(record):
                    break
                self._finished.add(index)
            index += 1
        if index >= self.rounds_total:
            return Standing(len(self._finished), self.rounds_total, None)
        states = with_current_step_names(record).steps if record is not None else {}
        where = {"campaign": self.config.name, "round": index}
        return Standing(
            rounds_done=len(self._finished),
            rounds_total=self.rounds_total,
            round=index,
            steps_done=tuple(s for s in self.steps if states.get(s) == StepState.done),
            step=next((s for s in self.steps if states.get(s) == StepState.running), None),
            steps_total=len(self.steps),
            relaxations_done=self.repo.count("calculations",
                                             {**where, "state": FINISHED_STATES}),
            relaxations_total=self.repo.count("calculations", where),
        )


def events(before: Standing | None, after: Standing, steps: tuple[str, ...]) -> list[str]:
    """What happened between two readings, one line each: a round started, its steps done
    (``steps``: those that apply, in order), its relaxations finished, the round done. Nothing
    before the first reading."""
    if before is None:
        return []
    lines: list[str] = []
    if before.round is not None and before.round != after.round:
        lines += _steps_done(before, steps, before.round)  # the ones finished since
        last = after.round if after.round is not None else after.rounds_total
        lines += [f"round {index} done ({index + 1} of {counted(after.rounds_total, 'round')})"
                  for index in range(before.round, last)]
        before = Standing(after.rounds_done, after.rounds_total, after.round)
    if after.round is None:
        return lines
    if not (before.step or before.steps_done) and (after.step or after.steps_done):
        lines.append(f"round {after.round} started")
    lines += _steps_done(before, after.steps_done, after.round)
    moved = (after.relaxations_done, after.relaxations_total) != (
        before.relaxations_done, before.relaxations_total)
    if moved and after.relaxations_total:
        lines.append(f"round {after.round}: {after.relaxations_done} of "
                     f"{counted(after.relaxations_total, 'relaxation')} finished")
    return lines


def _steps_done(before: Standing, done: tuple[str, ...], index: int) -> list[str]:
    """A line for each step of ``done`` (in order) that ``before`` had not seen done."""
    new = [s for s in done if s not in before.steps_done]
    total = counted(before.steps_total or len(done), "step")
    return [f"round {index}: {s} done ({len(before.steps_done) + k} of {total})"
            for k, s in enumerate(new, start=1)]


__all__ = ["FINISHED_STATES", "ProgressReader", "Standing", "events"]
