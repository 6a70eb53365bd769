"""Chunks of a round's work fanned out over a Dask cluster, results back in chunk order.

A campaign's ``dask:`` section (or the site's, in the settings) names the cluster: a
``distributed.LocalCluster`` on this machine by default, or ``dask_jobqueue.SLURMCluster``,
whose workers are SLURM batch jobs, or the ``address`` of a running scheduler. One cluster is
started per process and configuration, on first use, and kept for the rounds that follow
(SLURM jobs take a while to start); it is closed when the process exits, or by
:func:`close_clusters`.

:func:`map_chunks` is the one verb: it submits chunks with distributed's ``Client``, keeps a
bounded number in flight, and yields results in chunk order, so what a round stores does not
depend on which worker ran what. When a worker dies (a SLURM job cancelled or killed by its
walltime) the scheduler recomputes what it held elsewhere; a chunk the scheduler gives up on
(``KilledWorker``, after ``distributed.scheduler.allowed-failures`` deaths) is resubmitted
by ``map_chunks`` itself, up to ``max_retries`` times. Chunk functions must be pure functions
of their chunk (seeds come from the work items, not from the worker), so a rerun chunk gives
the same result.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from gnomon.config import DaskConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")


class ChunkLost(RuntimeError):
    """A chunk that could not be computed: its workers kept dying, or none was left."""


@dataclass
class DaskRuntime:
    """A started cluster (None when connected to an ``address``) and its client."""

    config: DaskConfig
    client: Any
    cluster: Any = None

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


_RUNTIMES: dict[str, DaskRuntime] = {}
_LOCK = threading.Lock()


def slurm_cluster_options(config: DaskConfig) -> dict[str, Any]:
    """``dask_jobqueue.SLURMCluster`` arguments for ``config``: one worker job of ``cores``
    cores, ``processes`` worker processes and ``memory``, for ``walltime``, started with this
    interpreter unless ``python`` says otherwise."""
    return dict(
        cores=config.cores,
        processes=config.processes,
        memory=config.memory,
        walltime=config.walltime,
        queue=config.queue,
        account=config.account,
        job_extra_directives=list(config.job_extra),
        job_script_prologue=list(config.job_script_prologue),
        python=config.python or sys.executable,
        interface=config.interface,
        log_directory=config.log_directory,
        scheduler_options={"dashboard_address": ":0"},  # any free port
    )


def make_cluster(config: DaskConfig) -> Any:
    """The cluster ``config`` asks for, scaled to its workers (not yet connected)."""
    if config.cluster == "slurm":
        from dask_jobqueue import SLURMCluster  # heavy: dask

        cluster = SLURMCluster(**slurm_cluster_options(config))
        cluster.scale(jobs=config.workers)
        return cluster
    from distributed import LocalCluster  # heavy: dask

    return LocalCluster(
        n_workers=config.workers,
        threads_per_worker=config.cores,
        processes=True,
        memory_limit=config.memory,
        dashboard_address=None,
        **({"interface": config.interface} if config.interface else {}),
    )


def runtime(config: DaskConfig) -> DaskRuntime:
    """This process's client for ``config``: the cluster is started on first use and reused."""
    key = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    with _LOCK:
        found = _RUNTIMES.get(key)
        if found is not None and found.client.status == "running":
            return found
        from distributed import Client  # heavy: dask

        cluster = None if config.address else make_cluster(config)
        client = Client(config.address or cluster)
        try:
            client.wait_for_workers(1, timeout=config.start_timeout)
        except TimeoutError:
            client.close()
            if cluster is not None:
                cluster.close()
            raise ChunkLost(
                f"no Dask worker of the {config.cluster} cluster started within "
                f"{config.start_timeout:.0f} s (SLURM: see squeue and the job logs)"
            ) from None
        log.info(
            "dask: %s cluster up (%s)",
            config.cluster,
            client.dashboard_link if cluster is None else cluster,
        )
        _RUNTIMES[key] = found = DaskRuntime(config, client, cluster)
        return found


@atexit.register
def close_clusters() -> None:
    """Close every cluster this process started (SLURM: cancels the worker jobs)."""
    with _LOCK:
        while _RUNTIMES:
            _, rt = _RUNTIMES.popitem()
            try:
                rt.close()
            except Exception as exc:  # noqa: BLE001 - closing at exit: report and go on with the rest
                log.warning("dask: closing a cluster failed: %s", exc)


def map_chunks(
    fn: Callable[[T], U],
    chunks: Iterable[T],
    client: Any,
    *,
    max_retries: int = 3,
    max_in_flight: int | None = None,
    name: str = "chunk",
    no_worker_timeout: float = 300.0,
) -> Iterator[U]:
    """``map(fn, chunks)`` on the cluster behind ``client``, results in chunk order.

    At most ``max_in_flight`` chunks (default: twice the cluster's threads) are submitted and
    not yet yielded, so a long stream is never held whole. A chunk whose worker died is
    recomputed (by the scheduler, or resubmitted here up to ``max_retries`` times); an error
    raised by ``fn`` itself is raised here unchanged. Closing the iterator early cancels what
    is still in flight. Waiting longer than ``no_worker_timeout`` with no worker left raises
    :class:`ChunkLost`.
    """
    limit = max_in_flight or 2 * max(1, sum(client.nthreads().values()))
    waiter = _Waiter(client, name, max_retries, no_worker_timeout)
    pending: deque[tuple[T, Any]] = deque()
    try:
        for chunk in chunks:
            pending.append((chunk, waiter.submit(fn, chunk)))
            if len(pending) >= limit:
                yield waiter.result(fn, *pending.popleft())
        while pending:
            yield waiter.result(fn, *pending.popleft())
    finally:
        for _, future in pending:
            future.cancel()


class _Waiter:
    """Submits chunks under unique keys and waits for one, resubmitting it when its worker
    died, and giving up when no worker is left for ``no_worker_timeout`` seconds."""

    def __init__(self, client: Any, name: str, max_retries: int, no_worker_timeout: float):
        self.client = client
        self.name = name
        self.max_retries = max_retries
        self.no_worker_timeout = no_worker_timeout
        self.run = uuid.uuid4().hex[:8]
        self.counter = iter(range(1 << 62))

    def submit(self, fn: Callable[[T], U], chunk: T) -> Any:
        key = f"{self.name}-{self.run}-{next(self.counter)}"
        return self.client.submit(fn, chunk, pure=False, key=key)

    def result(self, fn: Callable[[T], U], chunk: T, future: Any) -> U:
        from distributed import KilledWorker  # heavy: dask
        from distributed.client import FutureCancelledError  # heavy: dask

        tries = 0
        alone_since: float | None = None
        while True:
            try:
                return future.result(timeout=5)
            except TimeoutError:
                if self.client.scheduler_info(n_workers=-1).get("workers"):
                    alone_since = None
                    continue
                alone_since = alone_since or time.monotonic()
                if time.monotonic() - alone_since > self.no_worker_timeout:
                    raise ChunkLost(
                        f"{self.name}: no Dask worker left for {self.no_worker_timeout:.0f} s"
                    ) from None
            except (KilledWorker, FutureCancelledError) as exc:
                if tries >= self.max_retries:
                    raise ChunkLost(
                        f"{self.name}: lost {tries + 1} times with its workers ({exc})"
                    ) from exc
                tries += 1
                log.warning(
                    "dask: %s lost with its worker (%s); resubmitted (%d/%d)",
                    self.name,
                    exc,
                    tries,
                    self.max_retries,
                )
                future = self.submit(fn, chunk)
