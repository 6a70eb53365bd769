"""jobflow-remote dispatcher: relaxations queued in MongoDB and run by a jobflow-remote
runner on a cluster (SLURM through qtoolkit on its side).

Only usable where a MongoDB is configured and the ``jobflow-remote`` package is installed;
gnomon's tests cannot run it (no MongoDB there), so what is checked here is the project
configuration this module generates from the site settings (``project_config``) and its
validation (``validate_project_config``, with jobflow-remote's own Project model when the
package is importable). ``submit``/``poll``/``cancel`` go through jobflow-remote's public
API (``submit_flow``, ``JobController``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import yaml
from jobflow import Flow, Job, job
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from gnomon.credentials import mask_url, write_private
from gnomon.dft.dispatcher import BatchState, BatchStatus, Dispatcher
from gnomon.dft.errors import DispatchError
from gnomon.dft.settings import SiteSettings, SlurmSettings
from gnomon.dft.worker import run_batch

log = logging.getLogger(__name__)

WORKER = "gnomon-slurm"


def _mongo_store(url: str, database: str, collection: str) -> dict[str, Any]:
    u = urlparse(url)
    store: dict[str, Any] = {
        "type": "MongoStore",
        "host": u.hostname or "localhost",
        "port": u.port or 27017,
        "database": (u.path.lstrip("/") or database),
        "collection_name": collection,
    }
    if u.username:
        store["username"] = u.username
    if u.password:
        store["password"] = u.password
    return store


def project_config(
    mongo_url: str,
    slurm: SlurmSettings,
    work_dir: str | Path,
    name: str = "gnomon",
    database: str = "gnomon",
) -> dict[str, Any]:
    """A jobflow-remote project (``~/.jfremote/<name>.yaml``) for this site."""
    if not mongo_url.startswith(("mongodb://", "mongodb+srv://")):
        raise DispatchError(
            f"jobflow-remote needs a MongoDB URL (mongodb://...), got {mask_url(mongo_url)!r}"
        )
    resources = {
        k: v
        for k, v in {
            "partition": slurm.partition,
            "account": slurm.account,
            "qos": slurm.qos,
            "time": slurm.walltime,
            "nodes": slurm.nodes,
            "ntasks": slurm.ntasks,
            "cpus_per_task": slurm.cpus_per_task,
        }.items()
        if v is not None
    }
    pre_run = [f"export {k}={v}" for k, v in slurm.environment.items()] + list(slurm.pre_run)
    pre_run = [f"module load {m}" for m in slurm.modules] + pre_run
    return {
        "name": name,
        "workers": {
            WORKER: {
                "type": "local",
                "scheduler_type": "slurm",
                "work_dir": str(Path(work_dir).resolve()),
                "resources": resources,
                "pre_run": "\n".join(pre_run) or None,
                "max_jobs": None,
            }
        },
        "queue": {"store": _mongo_store(mongo_url, database, "jf_queue")},
        "exec_config": {},
        "jobstore": {
            "docs_store": _mongo_store(mongo_url, database, "jf_outputs"),
            "additional_stores": {"data": _mongo_store(mongo_url, database, "jf_data")},
        },
    }


def projects_folder() -> Path:
    """Where jobflow-remote looks for projects: ``$JFREMOTE_PROJECTS_FOLDER`` or ~/.jfremote."""
    return Path(os.environ.get("JFREMOTE_PROJECTS_FOLDER") or Path.home() / ".jfremote")


def write_project_file(config: dict[str, Any], folder: str | Path | None = None) -> Path:
    """Write a project (``<folder>/<name>.yaml``) for jobflow-remote to find by name.

    The project holds the MongoDB password of its stores, so the file is mode 0600 and its
    folder 0700: on a cluster, other users can often read home and scratch directories.
    """
    path = Path(folder or projects_folder()) / f"{config['name']}.yaml"
    write_private(path, yaml.safe_dump(config, sort_keys=False))
    return path


def validate_project_config(config: dict[str, Any]) -> list[str]:
    """Problems with a project configuration ([] if none).

    Uses jobflow-remote's ``Project`` model when it is installed; otherwise checks the
    fields gnomon relies on.
    """
    problems: list[str] = []
    try:
        from jobflow_remote.config.base import Project  # heavy: jobflow-remote (optional)
    except ImportError:
        Project = None  # noqa: N806
    if Project is not None:
        try:
            Project.model_validate(config)
        except ValidationError as exc:
            problems += [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return problems
    if not config.get("name"):
        problems.append("name: missing")
    workers = config.get("workers") or {}
    if not workers:
        problems.append("workers: at least one worker is required")
    for wname, w in workers.items():
        if w.get("type") not in ("local", "remote"):
            problems.append(f"workers.{wname}.type: must be local or remote")
        if w.get("scheduler_type") not in ("slurm", "pbs", "sge", "shell"):
            problems.append(
                f"workers.{wname}.scheduler_type: unsupported {w.get('scheduler_type')!r}"
            )
        if not w.get("work_dir"):
            problems.append(f"workers.{wname}.work_dir: missing")
    for key in ("queue", "jobstore"):
        if key not in config:
            problems.append(f"{key}: missing")
    store = (config.get("queue") or {}).get("store") or {}
    if store.get("type") != "MongoStore":
        problems.append("queue.store.type: jobflow-remote keeps its queue in MongoDB (MongoStore)")
    return problems


@dataclass
class JobflowRemoteDispatcher(Dispatcher):
    """Batches as jobflow-remote jobs; the runner on the cluster side submits them to SLURM."""

    name: ClassVar[str] = "jobflow-remote"
    project: str = "gnomon"
    worker: str = WORKER
    python: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, settings: SiteSettings, workers: int | None = None
    ) -> JobflowRemoteDispatcher:
        """A project generated from the site's MongoDB and SLURM settings; none without MongoDB
        (``check`` then says jobflow-remote cannot run). ``workers`` is ignored."""
        config = (
            project_config(settings.db_url, settings.slurm, settings.runs_dir)
            if settings.db_url.startswith("mongodb")
            else {}
        )
        return cls(python=settings.slurm.python, config=config)

    def check(self) -> None:
        try:
            import jobflow_remote  # noqa: F401 - heavy: jobflow-remote (optional)
        except ImportError:
            raise DispatchError(
                "jobflow-remote is not installed (pip install jobflow-remote) and needs a "
                "MongoDB; use the slurm dispatcher otherwise"
            ) from None
        problems = validate_project_config(self.config) if self.config else []
        if problems:
            raise DispatchError("jobflow-remote project invalid: " + "; ".join(problems))
        if self.config and not (projects_folder() / f"{self.project}.yaml").exists():
            path = write_project_file({**self.config, "name": self.project})
            log.info("jobflow-remote project written to %s (mode 0600)", path)
        from jobflow_remote import JobController  # heavy: jobflow-remote (optional)

        try:
            JobController.from_project_name(self.project).queue_store.connect()
        except PyMongoError as exc:
            raise DispatchError(f"jobflow-remote queue (MongoDB) unreachable: {exc}") from exc

    def submit(self, workdirs: Sequence[Path], label: str, batch_dir: Path) -> str:
        from jobflow_remote import submit_flow  # heavy: jobflow-remote (optional)

        batch = run_worker([str(Path(w).resolve()) for w in workdirs])
        batch.name = label
        submit_flow(Flow([batch], name=label), worker=self.worker, project=self.project)
        return batch.uuid

    def poll(self, batch_ids: Sequence[str]) -> dict[str, BatchStatus]:
        from jobflow_remote import JobController  # heavy: jobflow-remote (optional)

        jc = JobController.from_project_name(self.project)
        out: dict[str, BatchStatus] = {}
        for bid in batch_ids:
            info = jc.get_job_info(job_id=bid)
            if info is None:
                out[bid] = BatchStatus(BatchState.unknown, "not in the jobflow-remote queue")
                continue
            state = str(info.state.value if hasattr(info.state, "value") else info.state).upper()
            if state in ("COMPLETED",):
                out[bid] = BatchStatus(BatchState.finished, state)
            elif state in ("FAILED", "REMOTE_ERROR", "CANCELLED", "STOPPED", "USER_STOPPED"):
                out[bid] = BatchStatus(BatchState.failed, state)
            elif state in ("RUNNING", "TERMINATED", "DOWNLOADED"):
                out[bid] = BatchStatus(BatchState.running, state)
            else:
                out[bid] = BatchStatus(BatchState.pending, state)
        return out

    def cancel(self, batch_id: str) -> None:
        from jobflow_remote import JobController  # heavy: jobflow-remote (optional)

        JobController.from_project_name(self.project).cancel_jobs(job_ids=[batch_id])


@job
def gnomon_worker(dirs: list[str]) -> int:
    """The remote side of a batch: gnomon's worker over ``dirs`` (exit status as output).

    It lives at module level because jobflow serializes a job's function by its import path
    (``gnomon.dft.jobflow_remote:gnomon_worker``) and the runner imports it by that name.
    """
    return run_batch(dirs)


def run_worker(workdirs: list[str]) -> Job:
    """A jobflow Job running gnomon's worker over ``workdirs`` on the remote side."""
    return gnomon_worker(workdirs)
