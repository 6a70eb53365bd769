"""What one relaxation may use before it is stopped: memory and wall time, per process.

A CHGNet relaxation of an absurdly dense generated cell grew past 24 GB here: its neighbour
lists and three-body angles grow with the square of the density. Left alone, such a
relaxation takes the machine's memory, and the kernel's OOM killer then picks a victim that
may be the campaign itself. So the worker runs each relaxation in a child process of its own
(forked: nothing is imported twice) under two limits:

- memory: ``RLIMIT_DATA`` (the process's private writable memory: heap and anonymous maps,
  which is where tensors and arrays live). An allocation past it fails in the relaxation, as
  ``MemoryError`` or torch's "can't allocate memory", and is recorded as the reason. Unlike
  ``RLIMIT_AS`` it does not count address space reserved but not writable, which GPU runtimes
  reserve by the gigabyte (not tried on a GPU here: the limit is tested on CPU relaxations).
  The child also raises its ``oom_score_adj`` to the maximum, so that should the machine run
  out of memory anyway, the kernel takes a relaxation rather than the campaign.
- wall time: the worker waits at most this long, then kills the child and whatever it started
  (pw.x under mpirun), and records why.

Either way the calculation is recorded as failed with the reason, and the worker goes on to
the next calculation of its batch; the orchestrator is another process and never touched.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

DEFAULT_MEMORY_FRACTION = 0.4
"""Share of the node's physical memory one relaxation may hold when no ``memory_gb`` is set:
two runaway relaxations at once still leave the campaign a fifth of the machine."""

_GIB = 1024**3
_POLL_S = 0.2
#: a child's exit status saying "no outcome written, and none should be": the disk filled
#: under the relaxation, which is no fault of the structure; its batch is retried instead
EXIT_NO_ROOM = 75  # EX_TEMPFAIL


class RelaxLimits(BaseModel):
    """Per-relaxation limits (site settings ``relax_limits``; ``GNOMON_RELAX_LIMITS__*``)."""

    model_config = {"extra": "forbid"}

    memory_gb: float | None = Field(
        None, gt=0,
        description="Private memory one relaxation process may allocate (RLIMIT_DATA), GiB; "
        f"default {DEFAULT_MEMORY_FRACTION:.0%} of the node's physical memory.")
    wall_time_s: float | None = Field(
        None, gt=0,
        description="Seconds one relaxation may run before it is killed; default the engine's "
        "(1 h for force fields; none for QE and VASP, whose own timeouts and the batch "
        "queue's walltime apply).")
    enabled: bool = Field(True, description="Run each relaxation in a limited child process.")

    def memory_bytes(self) -> int:
        """The memory limit in force on this node, in bytes."""
        if self.memory_gb is not None:
            return int(self.memory_gb * _GIB)
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return int(pages * DEFAULT_MEMORY_FRACTION)


def describe_memory(limit_bytes: int) -> str:
    return f"{limit_bytes / _GIB:.1f} GiB"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed (Python's, numpy's or torch's words)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return "can't allocate memory" in text or "cannot allocate memory" in text \
        or "out of memory" in text


def _in_child(work: Callable[[], int], memory_bytes: int | None) -> None:
    """The child's life: limits first, then the work; its exit status is the work's."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass  # not Linux, or a sandbox that forbids it: the rlimit still applies
    status = 3
    try:
        if memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
        status = work()
    except BaseException:  # noqa: BLE001 - the parent records that no outcome was written
        log.exception("the relaxation process failed outside the relaxation")
    finally:
        os._exit(status)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc/<pid>/task/*/children``), deepest last."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found.extend(children)
            queue.extend(children)
    return found


def _kill_tree(pid: int) -> None:
    for p in [pid, *_descendants(pid)]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_limited(work: Callable[[], int], memory_bytes: int | None,
                wall_time_s: float | None) -> str | None:
    """Run ``work`` (which returns an exit status) in a forked child under the limits.

    Returns None when the child ended by itself with status 0 or 1 (the work recorded its own
    outcome) or :data:`EXIT_NO_ROOM`, else the reason the parent has to record: the wall time
    ran out, a signal killed it, or it exited without saying why.
    """
    child = multiprocessing.get_context("fork").Process(
        target=_in_child, args=(work, memory_bytes), daemon=False)
    previous = signal.getsignal(signal.SIGTERM)

    def _terminate(signum: int, frame: object) -> None:  # the batch is cancelled: child too
        if child.pid is not None:
            _kill_tree(child.pid)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    try:
        child.start()
        deadline = None if wall_time_s is None else time.monotonic() + wall_time_s
        while child.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                _kill_tree(child.pid)
                child.join()
                return (f"stopped after the wall-time limit of {wall_time_s:g} s per relaxation "
                        "(relax_limits.wall_time_s)")
            child.join(_POLL_S)
    finally:
        signal.signal(signal.SIGTERM, previous)
    code = child.exitcode
    if code in (0, 1, EXIT_NO_ROOM):
        return None
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = (f"; with a memory limit of {describe_memory(memory_bytes)} most likely out of "
                "memory" if memory_bytes is not None and -code in (signal.SIGKILL,
                                                                   signal.SIGSEGV,
                                                                   signal.SIGABRT) else "")
        return f"the relaxation process was killed by {name}{hint}"
    return f"the relaxation process exited with status {code} without recording an outcome"
