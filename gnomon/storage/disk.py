"""A filesystem that fills: the one error every layer raises for it, naming the path.

A full disk is not a bug to show as a traceback: the user frees space and runs the command
again, and nothing already stored is lost (a failed SQLite transaction is rolled back whole;
a relaxation's files are written atomically). So the SQLite repository, the serve view and
the commands turn SQLite's ``SQLITE_FULL`` and the kernel's ``ENOSPC``/``EDQUOT`` into
:class:`DiskFull`, whose message is one line: the path, the space left, what to do.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from gnomon.storage.repository import StorageError

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # SQLITE_FULL; extended codes keep it in their low byte


MIN_ROOM_BYTES = 1 << 20
"""Below this much free space a process that waits on others' writes (a campaign waiting for
its relaxations) stops: the writes it waits for cannot happen."""


class DiskFull(StorageError):
    """A write failed because the filesystem holding ``path`` is full (or over its quota), or
    a check found it (nearly) full before the next write."""

    def __init__(self, path: str | Path, checked: bool = False):
        self.path = Path(path)
        free = free_bytes(self.path)
        left = f"{_human(free)} free there" if free is not None else "its filesystem is full"
        if checked:
            message = f"disk full: {left}, under {self.path}; stopped before its next write"
        else:
            message = f"disk full: could not write {self.path} ({left}); nothing of this write " \
                      "was kept"
        super().__init__(message)


def check_room(*paths: str | Path, min_bytes: int = MIN_ROOM_BYTES) -> None:
    """Raise DiskFull naming the first of ``paths`` whose filesystem has less than
    ``min_bytes`` free."""
    for path in paths:
        free = free_bytes(path)
        if free is not None and free < min_bytes:
            raise DiskFull(path, checked=True)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is the filesystem being full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and (
            (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_FULL
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_path(exc: BaseException, default: str | Path | None = None) -> Path | None:
    """The path a disk-full error names: its own, the file an OSError was writing, else
    ``default``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return exc.path
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS and exc.filename:
            return Path(os.fsdecode(exc.filename))
        exc = exc.__cause__ or exc.__context__
    return Path(default) if default is not None else None


def as_disk_full(exc: BaseException) -> DiskFull | None:
    """``exc`` as the one-line DiskFull naming the path it could not write, or None when
    ``exc`` is not the filesystem being full."""
    if not is_disk_full(exc):
        return None
    if isinstance(exc, DiskFull):
        return exc
    path = disk_full_path(exc)
    return DiskFull(path) if path is not None else DiskFull("(a file of this command)")


def free_bytes(path: str | Path) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
