"""Local dispatcher: worker processes on this machine, at most ``max_workers`` at once.

Each batch is a detached process (its own session) so it outlives an orchestrator that is
killed; its batch id ``local:<pid>:<start time>`` lets a restarted orchestrator tell the
same process from a later one that reused the pid.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from gnomon.dft.dispatcher import BatchState, BatchStatus, Dispatcher, worker_command
from gnomon.dft.errors import DispatchError

if TYPE_CHECKING:
    from gnomon.dft.settings import SiteSettings

log = logging.getLogger(__name__)


def _proc_start(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a process, or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], fields[19]


@dataclass
class LocalDispatcher(Dispatcher):
    """A process pool with a concurrency limit that survives the orchestrator."""

    name: ClassVar[str] = "local"
    max_workers: int = 2
    python: str | None = None
    env: dict[str, str] | None = None
    # Our own children, by pid: their exit codes come from Popen, which may reap them at any
    # time (a Popen that is dropped reaps its ended child), so /proc cannot be relied on.
    _children: dict[str, subprocess.Popen] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: SiteSettings, workers: int | None = None) -> LocalDispatcher:
        """``workers`` processes at most (2 by default), each on the site's worker Python."""
        return cls(max_workers=workers or 2, python=settings.slurm.python)

    @property
    def max_active(self) -> int:  # type: ignore[override]
        return self.max_workers

    def check(self) -> None:
        if not Path("/proc/self/stat").exists():
            raise DispatchError("the local dispatcher needs /proc (Linux)")

    def submit(self, workdirs: Sequence[Path], label: str, batch_dir: Path) -> str:
        batch_dir.mkdir(parents=True, exist_ok=True)
        cmd = worker_command(workdirs, self.python)
        # Each worker gets its share of the cores: torch's OpenMP threads spinning against
        # another worker's on the same cores make every force call tens of times slower.
        threads = str(max(1, (os.cpu_count() or 1) // self.max_workers))
        env = {
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            **os.environ,
            **(self.env or {}),
        }
        with open(batch_dir / f"{label}.out", "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env, cwd=batch_dir,
            )
        info = _proc_start(proc.pid)
        start = info[1] if info else "0"
        self._children[f"local:{proc.pid}:{start}"] = proc
        log.info("local batch %s: pid %d over %d calculation(s)", label, proc.pid, len(workdirs))
        return f"local:{proc.pid}:{start}"

    def _status(self, batch_id: str) -> BatchStatus:
        try:
            _, pid_s, start = batch_id.split(":")
            pid = int(pid_s)
        except ValueError:
            return BatchStatus(BatchState.unknown, f"not a local batch id: {batch_id}")
        child = self._children.get(batch_id)
        if child is not None:
            code = child.poll()
            if code is None:
                return BatchStatus(BatchState.running)
            if code < 0:
                return BatchStatus(BatchState.failed, f"killed by signal {-code}")
            return BatchStatus(BatchState.finished, f"exit code {code}")
        info = _proc_start(pid)
        if info is None or info[1] != start:
            return BatchStatus(BatchState.finished, "process ended")
        if info[0] == "Z":  # our own child that ended: reap it
            try:
                _, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                status = 0
            code = os.waitstatus_to_exitcode(status) if status else 0
            if code < 0:
                return BatchStatus(BatchState.failed, f"killed by signal {-code}")
            return BatchStatus(BatchState.finished, f"exit code {code}")
        return BatchStatus(BatchState.running)

    def poll(self, batch_ids: Sequence[str]) -> dict[str, BatchStatus]:
        return {b: self._status(b) for b in batch_ids}

    def cancel(self, batch_id: str) -> None:
        if not self._status(batch_id).active:
            return
        pid = int(batch_id.split(":")[1])
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        log.info("local batch %s cancelled", batch_id)
