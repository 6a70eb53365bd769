"""What runs inside a batch: relax each calculation directory given on the command line.

    python -m gnomon.dft.worker RUNS/<calc-1> RUNS/<calc-2> ...

Each directory holds ``job.json`` (calculation id, engine spec, structure). The worker
writes ``started`` when it begins one, then ``result.json`` (the task document) or
``error.json`` (the reason it failed), each atomically, and appends a line to
``attempts.log``. A directory that already has ``result.json`` is skipped, so a resubmitted
batch never repeats a finished relaxation. The worker does not touch the database: the
orchestrator collects the files.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from gnomon.dft.engine import engine_from_spec
from gnomon.dft.errors import RelaxationError
from gnomon.dft.task import TaskDocument

log = logging.getLogger("gnomon.dft.worker")

JOB = "job.json"
RESULT = "result.json"
ERROR = "error.json"
STARTED = "started"
ATTEMPTS = "attempts.log"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_job(
    workdir: Path, calc_id: str, engine_spec: dict[str, Any], structure: dict[str, Any]
) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    write_atomic(
        workdir / JOB,
        json.dumps({"calc_id": calc_id, "engine": engine_spec, "structure": structure}),
    )


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
    with open(workdir / ATTEMPTS, "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {batch} {job['calc_id']}\n")
    (workdir / ERROR).unlink(missing_ok=True)
    write_atomic(workdir / STARTED, batch)
    try:
        engine = engine_from_spec(job["engine"])
        doc = engine.relax(Structure.from_dict(job["structure"]), workdir)
        text = doc.model_dump_json()
    except RelaxationError as exc:
        reason = exc.reason
    except Exception as exc:  # noqa: BLE001 - recorded as the calculation's failure reason
        log.error("relaxation in %s raised:\n%s", workdir, traceback.format_exc())
        reason = f"{type(exc).__name__}: {exc}"
    else:
        write_atomic(workdir / RESULT, text)
        log.info("%s done: E = %.6f eV (%s)", workdir, doc.energy, doc.scheme)
        return True
    write_atomic(workdir / ERROR, json.dumps({"reason": reason}))
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
