"""The database of a flow, opened once per process and handed down.

A campaign flow, its rounds and their tasks all work on one database. Opening it costs a
connection (and for SQLite a schema check and a checkpoint thread), so a process opens it
once: the flow holds it (:func:`held_repository`) for as long as it runs, and every task that
runs in the same process (Prefect's thread pool, or a task called in the flow) gets that one
(:func:`process_repository`). A task that runs in another process (a Dask worker, another
machine) opens the database there, once, and keeps it for the process's later tasks; it is
closed when that process exits.

A repository is shared by the threads of its process; the SQLite backend gives each thread
its own connection, and a campaign's concurrent tasks (the generators) only read.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from gnomon.storage import Repository, open_repository

_OPEN: dict[str, Repository] = {}
_LOCK = threading.Lock()


def process_repository(url: str) -> Repository:
    """The repository at ``url`` for this process: the one a flow holds, else opened now and
    kept until the process exits."""
    with _LOCK:
        if url not in _OPEN:
            _OPEN[url] = open_repository(url)
        return _OPEN[url]


@contextmanager
def held_repository(url: str) -> Iterator[Repository]:
    """The process's repository at ``url`` while the block (a flow's run) runs: the one the
    process already has, else opened now and closed after the block."""
    with _LOCK:
        repo = _OPEN.get(url)
        opened_here = repo is None
        if repo is None:
            repo = _OPEN[url] = open_repository(url)
    try:
        yield repo
    finally:
        if opened_here:
            with _LOCK:
                if _OPEN.get(url) is repo:
                    del _OPEN[url]
            repo.close()


def close_repositories() -> None:
    """Close every repository this process keeps (at exit; tests call it between cases)."""
    with _LOCK:
        opened = list(_OPEN.values())
        _OPEN.clear()
    for repo in opened:
        repo.close()


atexit.register(close_repositories)
