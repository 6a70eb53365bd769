"""SLURM dispatcher: one batch job per relaxation, or ``pack`` of them in one job.

Scripts are written and squeue/scontrol/scancel answers parsed by qtoolkit (SlurmIO through
a QueueManager on the local host); partition, account, QoS, walltime, nodes/tasks, modules,
environment and pre-run lines come from the site's SlurmSettings. Each job carries a label
(``--job-name``) so an orchestrator that died between ``sbatch`` and recording the job id
can still find it.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from qtoolkit.core.data_objects import QState, SubmissionStatus
from qtoolkit.core.exceptions import QTKError
from qtoolkit.io.slurm import SlurmIO
from qtoolkit.manager import QueueManager

from gnomon.credentials import write_private
from gnomon.dft.dispatcher import BatchState, BatchStatus, Dispatcher, shell_command
from gnomon.dft.errors import DispatchError
from gnomon.dft.settings import SiteSettings, SlurmSettings

log = logging.getLogger(__name__)


@dataclass
class SlurmDispatcher(Dispatcher):
    """Batch jobs on a SLURM cluster reachable from this machine."""

    name: ClassVar[str] = "slurm"
    settings: SlurmSettings = field(default_factory=SlurmSettings)
    timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: SiteSettings, workers: int | None = None) -> SlurmDispatcher:
        """The site's SLURM settings; ``workers`` is ignored (the queue decides concurrency)."""
        return cls(settings.slurm)

    def __post_init__(self) -> None:
        self.manager = QueueManager(SlurmIO())

    # -- checks ---------------------------------------------------------------------------
    def check(self) -> None:
        for exe in ("sbatch", "squeue", "scancel", "sinfo"):
            if shutil.which(exe) is None:
                raise DispatchError(f"SLURM not found: {exe} is not on PATH")
        try:
            proc = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True,
                                  timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise DispatchError(
                f"SLURM unreachable: sinfo did not answer in {self.timeout_s:.0f} s"
            ) from None
        if proc.returncode != 0:
            raise DispatchError(
                f"SLURM unreachable: sinfo failed: {(proc.stderr or proc.stdout).strip()}"
            )
        partitions = {
            line.split()[0].rstrip("*") for line in proc.stdout.splitlines() if line.strip()
        }
        if self.settings.partition and self.settings.partition not in partitions:
            raise DispatchError(
                f"SLURM partition {self.settings.partition!r} does not exist "
                f"(partitions: {', '.join(sorted(partitions)) or 'none'})"
            )

    # -- submit ---------------------------------------------------------------------------
    def options(self, label: str, batch_dir: Path) -> dict:
        s = self.settings
        opts = {
            "job_name": label,
            "partition": s.partition,
            "account": s.account,
            "qos": s.qos,
            "time": s.walltime,
            "nodes": s.nodes,
            "ntasks": s.ntasks,
            "cpus_per_task": s.cpus_per_task,
            "qout_path": str(batch_dir / f"{label}.out"),
            "qerr_path": str(batch_dir / f"{label}.err"),
        }
        return {k: v for k, v in opts.items() if v is not None}

    def script(self, workdirs: Sequence[Path], label: str, batch_dir: Path) -> str:
        commands = [f"export {k}={shlex.quote(v)}" for k, v in self.settings.environment.items()]
        commands += list(self.settings.pre_run)
        commands += [
            f"cd {shlex.quote(str(batch_dir))}",
            shell_command(workdirs, self.settings.python),
        ]
        return self.manager.get_submission_script(
            commands, self.options(label, batch_dir),
            environment={"modules": self.settings.modules} if self.settings.modules else None,
        )

    def submit(self, workdirs: Sequence[Path], label: str, batch_dir: Path) -> str:
        batch_dir.mkdir(parents=True, exist_ok=True)
        script = batch_dir / f"{label}.sh"
        # the site's environment lines may export a secret (a database URL for the compute
        # nodes): the script is the owner's alone, 0600 (sbatch reads it as the owner)
        write_private(script, self.script(workdirs, label, batch_dir))
        stdout, stderr, code = self.manager.execute_cmd(
            self.manager.scheduler_io.get_submit_cmd(script), batch_dir
        )
        try:
            result = self.manager.scheduler_io.parse_submit_output(
                exit_code=code, stdout=stdout, stderr=stderr
            )
        except QTKError as exc:
            raise DispatchError(f"sbatch failed for {label}: {exc}") from exc
        if result.status != SubmissionStatus.SUCCESSFUL or not result.job_id:
            raise DispatchError(f"sbatch failed for {label}: {(stderr or stdout).strip()}")
        log.info("SLURM job %s (%s): %d calculation(s)", result.job_id, label, len(workdirs))
        return str(result.job_id)

    # -- poll -----------------------------------------------------------------------------
    @staticmethod
    def _status_of(job) -> BatchStatus:
        sub = getattr(job.sub_state, "name", None) or str(job.sub_state)
        state = job.state
        if state in (QState.QUEUED, QState.QUEUED_HELD, QState.REQUEUED, QState.REQUEUED_HELD):
            return BatchStatus(BatchState.pending, sub)
        if state in (QState.RUNNING, QState.SUSPENDED):
            return BatchStatus(BatchState.running, sub)
        if state == QState.DONE:
            return BatchStatus(BatchState.finished, sub)
        if state == QState.FAILED:
            return BatchStatus(BatchState.failed, sub)
        return BatchStatus(BatchState.unknown, sub)

    def poll(self, batch_ids: Sequence[str]) -> dict[str, BatchStatus]:
        ids = [str(b) for b in batch_ids]
        if not ids:
            return {}
        try:
            jobs = {str(j.job_id): j for j in self.manager.get_jobs_list(list(ids))}
        except QTKError as exc:
            raise DispatchError(f"squeue failed: {exc}") from exc
        out: dict[str, BatchStatus] = {}
        for b in ids:
            job = jobs.get(b)
            if job is None:  # no longer in squeue: ask scontrol for its final state
                job = self.manager.get_job(b)
            out[b] = (
                self._status_of(job)
                if job is not None
                else BatchStatus(BatchState.unknown, "not known to SLURM")
            )
        return out

    def cancel(self, batch_id: str) -> None:
        stdout, stderr, code = self.manager.execute_cmd(f"scancel {shlex.quote(str(batch_id))}")
        if code != 0:
            log.warning("scancel %s: %s", batch_id, (stderr or stdout).strip())

    def find(self, label: str) -> str | None:
        try:
            jobs = self.manager.get_jobs_list()
        except QTKError as exc:
            raise DispatchError(f"squeue failed: {exc}") from exc
        for job in jobs:
            if job.name == label:
                return str(job.job_id)
        return None
