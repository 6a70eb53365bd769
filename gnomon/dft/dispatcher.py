"""The one interface every dispatcher offers: submit, poll, cancel, find (to re-attach).

A dispatcher runs *batches*: one batch job runs the worker (``python -m gnomon.cli worker``)
over one or more calculation directories. It knows nothing about the database: the
:class:`~gnomon.dft.service.Relaxations` service stores each batch id on the Calculation
record, so a restarted orchestrator polls the same batches instead of submitting again.
"""

from __future__ import annotations

import shlex
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar


class BatchState(StrEnum):
    pending = "pending"
    running = "running"
    finished = "finished"  # ended (successfully or not): the result files say what happened
    failed = "failed"  # ended abnormally (killed, cancelled, node failure, walltime)
    unknown = "unknown"  # the queue no longer knows it


@dataclass(frozen=True)
class BatchStatus:
    state: BatchState
    reason: str | None = None

    @property
    def active(self) -> bool:
        return self.state in (BatchState.pending, BatchState.running)


class Dispatcher(ABC):
    """Runs batches of relaxations somewhere and reports on them."""

    name: ClassVar[str]
    #: how many batches may be active at once (None: no limit, the queue decides)
    max_active: int | None = None

    @abstractmethod
    def check(self) -> None:
        """Raise DispatchError if batches cannot be submitted (queue unreachable)."""

    @abstractmethod
    def submit(self, workdirs: Sequence[Path], label: str, batch_dir: Path) -> str:
        """Start one batch over ``workdirs``; returns its batch id."""

    @abstractmethod
    def poll(self, batch_ids: Sequence[str]) -> dict[str, BatchStatus]:
        """The status of each batch id."""

    @abstractmethod
    def cancel(self, batch_id: str) -> None:
        """Stop a batch (a batch that already ended is not an error)."""

    def find(self, label: str) -> str | None:
        """The id of an active batch submitted under ``label``, if the queue can tell."""
        return None


def worker_command(workdirs: Sequence[Path], python: str | None = None) -> list[str]:
    """The command a batch runs: the gnomon worker over each calculation directory."""
    return [python or sys.executable, "-m", "gnomon.cli", "worker", *[str(Path(w).resolve()) for w in workdirs]]


def shell_command(workdirs: Sequence[Path], python: str | None = None) -> str:
    return shlex.join(worker_command(workdirs, python))


DISPATCHERS = ("local", "slurm", "jobflow-remote")


def make_dispatcher(name: str, settings=None, workers: int | None = None) -> Dispatcher:
    """The dispatcher called ``name`` configured from a site's Settings."""
    from gnomon.config import Settings

    settings = settings or Settings()
    if name == "local":
        from gnomon.dft.local import LocalDispatcher

        return LocalDispatcher(max_workers=workers or 2, python=settings.slurm.python)
    if name == "slurm":
        from gnomon.dft.slurm import SlurmDispatcher

        return SlurmDispatcher(settings.slurm)
    if name == "jobflow-remote":
        from gnomon.dft.jobflow_remote import JobflowRemoteDispatcher, project_config

        config = project_config(settings.db_url, settings.slurm, settings.runs_dir) if settings.db_url.startswith("mongodb") else {}
        return JobflowRemoteDispatcher(python=settings.slurm.python, config=config)
    raise ValueError(f"unknown dispatcher {name!r}: choose one of {', '.join(DISPATCHERS)}")
