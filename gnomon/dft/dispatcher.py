"""The one interface every dispatcher offers: submit, poll, cancel, find (to re-attach).

A dispatcher runs *batches*: one batch job runs the worker (``python -m gnomon.cli worker``)
over one or more calculation directories. It knows nothing about the database: the
:class:`~gnomon.dft.service.Relaxations` service stores each batch id on the Calculation
record, so a restarted orchestrator polls the same batches instead of submitting again.

Each concrete dispatcher registers itself by ``name`` in
:data:`gnomon.dft.registry.DISPATCHERS`; this module imports none of them.
"""

from __future__ import annotations

import shlex
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from gnomon.dft.registry import DISPATCHERS

if TYPE_CHECKING:
    from gnomon.dft.settings import SiteSettings


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that names itself is a dispatcher: it joins the registry under that name."""
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            DISPATCHERS.register(cls)

    @classmethod
    def from_settings(cls, settings: SiteSettings, workers: int | None = None) -> Dispatcher:
        """This dispatcher configured from a site's settings (``workers``: concurrency, where it
        has a say in it). The default suits a dispatcher that needs no site settings."""
        return cls()

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
    return [
        python or sys.executable,
        "-m",
        "gnomon.cli",
        "worker",
        *[str(Path(w).resolve()) for w in workdirs],
    ]


def shell_command(workdirs: Sequence[Path], python: str | None = None) -> str:
    return shlex.join(worker_command(workdirs, python))


def make_dispatcher(name: str, settings: SiteSettings, workers: int | None = None) -> Dispatcher:
    """The dispatcher called ``name`` (see :data:`DISPATCHERS`) configured from a site's settings.

    ``settings`` is required: defaulting it would silently read the environment here, far
    from where the caller chose its site.
    """
    return DISPATCHERS.resolve(name).from_settings(settings, workers=workers)
