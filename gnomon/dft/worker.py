"""What runs inside a batch: relax each calculation directory given on the command line.

    python -m gnomon.dft.worker RUNS/<calc-1> RUNS/<calc-2> ...

Each directory holds ``job.json`` (calculation id, engine spec, structure). The worker
writes ``started`` when it begins one, then ``result.json`` (the task document) or
``error.json`` (the reason it failed), each atomically, and appends a line to
``attempts.log``. A directory that already has ``result.json`` is skipped, so a resubmitted
batch never repeats a finished relaxation. The worker does not touch the database: the
orchestrator collects the files.

Each relaxation runs in a child process of the worker under the limits ``job.json`` carries
(:mod:`gnomon.dft.limits`: memory, wall time): one that runs away is stopped, its reason
written to ``error.json`` like any failure, and the worker goes on with the next directory.
On a full disk the worker waits for room to write an outcome (up to :data:`ROOM_WAIT_S`)
rather than lose a finished relaxation; a relaxation whose own files hit the full disk ends
with no outcome, and its batch is retried like one whose node was lost.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from gnomon.dft.engine import engine_from_spec
from gnomon.dft.errors import RelaxationError
from gnomon.dft.limits import (
    EXIT_NO_ROOM,
    RelaxLimits,
    describe_memory,
    is_out_of_memory,
    run_limited,
)
from gnomon.dft.task import TaskDocument
from gnomon.storage.disk import is_disk_full

log = logging.getLogger("gnomon.dft.worker")

JOB = "job.json"
RESULT = "result.json"
ERROR = "error.json"
STARTED = "started"
ATTEMPTS = "attempts.log"


#: how long a worker waits for room on a full disk before giving a write up
ROOM_WAIT_S = 3600.0
_ROOM_POLL_S = 5.0


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def when_room(write: Callable[[], None], what: Path, wait_s: float = ROOM_WAIT_S) -> None:
    """Run ``write``; while the disk is full, try again every few seconds for up to ``wait_s``.

    A relaxation's outcome is worth the wait: the orchestrator stops when the disk fills (its
    database is there too), and once space is freed and the campaign resumed, a result the
    worker kept trying to write is collected instead of the relaxation being run again.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            write()
            return
        except OSError as exc:
            if not is_disk_full(exc) or time.monotonic() > deadline:
                raise
            log.warning("disk full writing %s; trying again in %.0f s", what, _ROOM_POLL_S)
            time.sleep(_ROOM_POLL_S)


def write_job(
    workdir: Path, calc_id: str, engine_spec: dict[str, Any], structure: dict[str, Any],
    limits: RelaxLimits | None = None,
) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    job = {"calc_id": calc_id, "engine": engine_spec, "structure": structure}
    if limits is not None:
        job["limits"] = limits.model_dump(mode="json")
    write_atomic(workdir / JOB, json.dumps(job))


def read_result(workdir: Path) -> TaskDocument:
    return TaskDocument.model_validate_json((workdir / RESULT).read_text())


def read_error(workdir: Path) -> str:
    try:
        return json.loads((workdir / ERROR).read_text())["reason"]
    except (OSError, ValueError, KeyError) as exc:
        return f"unreadable error.json in {workdir}: {exc}"


def clear_outcome(workdir: Path) -> None:
    """Forget a previous attempt's outcome markers (not its files: QE restarts from them)."""
    for name in (ERROR, STARTED):
        (workdir / name).unlink(missing_ok=True)


def run_one(workdir: Path) -> bool:
    """Relax one directory; True if it ended with a result."""
    if (workdir / RESULT).exists():
        log.info("%s already has a result; skipped", workdir)
        return True
    job = json.loads((workdir / JOB).read_text())
    batch = os.environ.get("SLURM_JOB_ID", f"pid {os.getpid()}")
    (workdir / ERROR).unlink(missing_ok=True)
    when_room(lambda: write_atomic(workdir / STARTED, batch), workdir / STARTED)
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {batch} {job['calc_id']}\n"
    when_room(lambda: _append(workdir / ATTEMPTS, line), workdir / ATTEMPTS)
    limits = RelaxLimits.model_validate(job.get("limits") or {})
    try:
        engine = engine_from_spec(job["engine"])
    except Exception as exc:  # noqa: BLE001 - recorded as the calculation's failure reason
        return _failed(workdir, f"{type(exc).__name__}: {exc}")
    if not limits.enabled:
        return _relax(workdir, engine, job, None) == 0
    memory = limits.memory_bytes()
    wall = limits.wall_time_s if limits.wall_time_s is not None else engine.wall_time_s
    stopped = run_limited(lambda: _relax(workdir, engine, job, memory), memory, wall)
    if stopped is not None:
        return _failed(workdir, stopped)
    return (workdir / RESULT).exists()


def _relax(workdir: Path, engine: Any, job: dict[str, Any], memory: int | None) -> int:
    """Relax the job's structure and write its outcome; 0 with a result, 1 with an error,
    EXIT_NO_ROOM with neither when the disk filled under it (the batch is retried)."""
    try:
        doc = engine.relax(Structure.from_dict(job["structure"]), workdir)
        text = doc.model_dump_json()
    except RelaxationError as exc:
        reason = exc.reason
    except Exception as exc:  # noqa: BLE001 - recorded as the calculation's failure reason
        if is_disk_full(exc):
            log.error("relaxation in %s stopped: the disk is full (%s); its batch is retried",
                      workdir, exc)
            return EXIT_NO_ROOM
        log.error("relaxation in %s raised:\n%s", workdir, traceback.format_exc())
        reason = f"{type(exc).__name__}: {exc}"
        if memory is not None and is_out_of_memory(exc):
            reason = (f"stopped at the memory limit of {describe_memory(memory)} per relaxation "
                      f"(relax_limits.memory_gb): {reason.splitlines()[0]}")
    else:
        when_room(lambda: write_atomic(workdir / RESULT, text), workdir / RESULT)
        log.info("%s done: E = %.6f eV (%s)", workdir, doc.energy, doc.scheme)
        return 0
    _failed(workdir, reason)
    return 1


def _append(path: Path, line: str) -> None:
    """Append ``line`` whole or not at all (a full disk must not leave half a line)."""
    size = path.stat().st_size if path.exists() else 0
    try:
        with open(path, "a") as fh:
            fh.write(line)
    except OSError:
        with open(path, "a") as fh:
            fh.truncate(size)
        raise


def _failed(workdir: Path, reason: str) -> bool:
    text = json.dumps({"reason": reason})
    when_room(lambda: write_atomic(workdir / ERROR, text), workdir / ERROR)
    log.error("%s failed: %s", workdir, reason)
    return False


def run_batch(workdirs: list[str]) -> int:
    """Run every calculation directory of a batch; exit status 0 when all succeeded.

    Reached through ``gnomon worker DIR...`` (the command a batch job runs).
    """
    logging.basicConfig(level=os.environ.get("GNOMON_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ok = [run_one(Path(w)) for w in workdirs]
    return 0 if all(ok) else 1
