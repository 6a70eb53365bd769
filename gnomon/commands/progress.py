"""A campaign run's progress as a person sees it: a live display on a terminal (rounds, the
round's steps, its relaxations, time elapsed), and one plain line per event where the output
is a file or a CI log, or where ``-v`` interleaves Prefect's own log with it.

The display reads the campaign's records (:mod:`gnomon.campaign.progress`) from a thread of
its own while the flow runs in the command's thread; it decides nothing and writes nothing.
While the live display holds the terminal, warnings logged by anyone are printed above it
rather than through it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from types import TracebackType

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from gnomon.campaign.progress import ProgressReader, Standing, events
from gnomon.config import CampaignConfig
from gnomon.credentials import MaskSecretsFilter
from gnomon.plural import counted
from gnomon.storage import Repository

log = logging.getLogger(__name__)

POLL_S = 1.0


class CampaignProgress:
    """Shows a campaign's progress while the block runs (``with CampaignProgress(...):``).

    ``live`` True draws rich's live display on ``console``; False prints one line per event,
    each headed by the time elapsed.
    """

    def __init__(self, repo: Repository, config: CampaignConfig, rounds_total: int,
                 console: Console, *, live: bool, poll_s: float = POLL_S) -> None:
        self.reader = ProgressReader(repo, config, rounds_total)
        self.name, self.console, self.live, self.poll_s = config.name, console, live, poll_s
        self.last: Standing | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="campaign-progress",
                                        daemon=True)
        self._started = time.monotonic()
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._muted: list[tuple[logging.Handler, int]] = []
        self._handler: logging.Handler | None = None

    def __enter__(self) -> CampaignProgress:
        self._started = time.monotonic()
        self.last = self.reader.read()
        self._say(self._opening(self.last))
        if self.live:
            self._start_live(self.last)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._poll()  # the last steps, finished after the thread's last reading
        if self._progress is not None:
            self._progress.stop()
            self._restore_logs()

    def _opening(self, now: Standing) -> str:
        todo = now.rounds_total - now.rounds_done
        if not todo:
            return (f"campaign {self.name}: all {counted(now.rounds_total, 'round')} already "
                    "done")
        done = f", {now.rounds_done} already done" if now.rounds_done else ""
        return (f"campaign {self.name}: {counted(todo, 'round')} to run (of "
                f"{now.rounds_total}{done}), from round {now.round}")

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._poll()

    def _poll(self) -> None:
        try:
            now = self.reader.read()
        except Exception as exc:  # noqa: BLE001 - a display only: the flow reports its own errors
            log.debug("progress not read this time: %s", exc)
            return
        if self._progress is not None:
            self._update_live(now)
        else:
            for line in events(self.last, now, self.reader.steps):
                self._say(line)
        self.last = now

    def _say(self, line: str) -> None:
        elapsed = timedelta(seconds=int(time.monotonic() - self._started))
        target = self._progress.console if self._progress is not None else self.console
        target.print(f"[{elapsed}] {line}", markup=False, highlight=False, soft_wrap=True)

    def _start_live(self, now: Standing) -> None:
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
        )
        self._tasks = {key: self._progress.add_task(key, total=None)
                       for key in ("rounds", "steps", "relaxations")}
        self._update_live(now)
        self._progress.start()
        self._route_logs()

    def _update_live(self, now: Standing) -> None:
        progress, tasks = self._progress, self._tasks
        progress.update(tasks["rounds"], description=f"campaign {self.name}: rounds",
                        completed=now.rounds_done, total=now.rounds_total)
        if now.round is None:
            steps = len(self.reader.steps)
            progress.update(tasks["steps"], description="all rounds done", completed=steps,
                            total=steps)
            progress.update(tasks["relaxations"], visible=False)
            return
        step = now.step or ("starting" if not now.steps_done else "between steps")
        progress.update(tasks["steps"], description=f"round {now.round}: {step}",
                        completed=len(now.steps_done), total=now.steps_total)
        progress.update(tasks["relaxations"], description=f"round {now.round}: relaxations",
                        completed=now.relaxations_done, total=now.relaxations_total,
                        visible=bool(now.relaxations_total))

    def _route_logs(self) -> None:
        """Warnings printed above the live display, through its console, while it runs."""
        root = logging.getLogger()
        self._muted = [(h, h.level) for h in root.handlers]
        for handler, _ in self._muted:
            handler.setLevel(logging.CRITICAL + 1)
        self._handler = RichHandler(console=self._progress.console, show_path=False,
                                    level=logging.WARNING)
        self._handler.addFilter(MaskSecretsFilter())
        root.addHandler(self._handler)

    def _restore_logs(self) -> None:
        root = logging.getLogger()
        if self._handler is not None:
            root.removeHandler(self._handler)
            self._handler = None
        for handler, level in self._muted:
            handler.setLevel(level)
        self._muted = []


__all__ = ["CampaignProgress"]
