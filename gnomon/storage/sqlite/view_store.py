"""Served views kept on disk across restarts and shared by the workers of a server.

Building the view of 10^5 phases takes about a minute (:func:`.view.build_view`). A restart of
``gnomon serve`` on a database that has not changed, or the second worker of one server,
should not pay that again, so finished views are kept in a :class:`ViewStore`: a directory
private to the user (``$TMPDIR/gnomon-serve-<uid>`` by default) where each view is named by
the database's served-content stamp (:mod:`.stamp`) and the view's format. A view is found
again exactly when a database holds the content it was built from; a database that changed in
any way holds a new stamp, so a stale view is never found. The store writes only its own
directory, never the database.

What the directory holds:

- ``<format>-<stamp>.sqlite``: a finished view, renamed into place when complete;
- ``<format>-<stamp>.sqlite.building-<random>``: a view being built;
- ``<format>-<stamp>.lock``: locked (``flock``) by the process building that view, so that
  the workers of a server starting together build it once: the others wait, then take it;
- ``run-<random>/``: one serving process's own directory, holding hard links to the views it
  answers from (the store may then drop its name for an old view while a process still reads
  it) and a ``lock`` held for the process's life (a run directory whose lock is free belongs
  to a process that died, and is removed by the next one to start).

The :data:`KEEP` views used last are kept; older ones are deleted as new ones are published.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gnomon.storage.disk import DiskFull, is_disk_full
from gnomon.storage.repository import StorageError

#: finished views kept in a store (each is about 2 KB per structure)
KEEP = 3
#: a build or run directory untouched this long has no living owner (its owner writes it or
#: holds its lock)
_STALE_S = 3600.0
#: a run directory younger than this may not hold its lock yet
_RUN_GRACE_S = 10.0
#: filesystems without hard links: a view is copied into the run directory instead
_NO_LINKS = frozenset({errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP})


def default_root() -> Path:
    """``$TMPDIR/gnomon-serve-<uid>``: where views were built before they were kept (the
    system's temporary directory), one directory per user."""
    return Path(tempfile.gettempdir()) / f"gnomon-serve-{os.getuid()}"


@contextlib.contextmanager
def _disk_full_names(path: Path) -> Iterator[None]:
    """A full filesystem met in the block is raised as DiskFull naming ``path``."""
    try:
        yield
    except BaseException as exc:
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(path) from exc
        raise


@dataclass(frozen=True)
class Obtained:
    """A view file in a run directory, and how it came to be there."""

    path: Path
    built: bool
    """Built by this process (else taken from the store, built before or by another)."""
    kept: bool
    """Kept in the store for later starts and other workers."""


class ViewStore:
    """A directory of finished views named ``<fmt>-<stamp>.sqlite``. ``fmt`` names the view's
    layout: views of another layout are never taken."""

    def __init__(self, fmt: str, root: Path | None = None):
        self.fmt = fmt
        self.root = root if root is not None else default_root()

    def open_run(self) -> ViewRun:
        """This process's run directory in the store (made private; dead processes' run
        directories are removed first)."""
        for attempt in range(3):
            self._ensure_root()
            self._sweep()
            try:
                with _disk_full_names(self.root):
                    directory = Path(tempfile.mkdtemp(prefix="run-", dir=self.root))
                    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:  # another process removed the empty store just now
                if attempt == 2:
                    raise
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return ViewRun(self, directory, fd)
        raise AssertionError("unreachable")

    def _ensure_root(self) -> None:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with _disk_full_names(self.root), contextlib.suppress(FileExistsError):
            os.mkdir(self.root, 0o700)
        st = os.lstat(self.root)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            # another user's directory could hand this server views of their making
            raise StorageError(f"{self.root} is not a directory private to this user, so it "
                               "cannot hold served views: remove it, or set TMPDIR elsewhere")

    def published(self, name: str) -> Path:
        return self.root / f"{name}.sqlite"

    @contextlib.contextmanager
    def building(self, name: str) -> Iterator[None]:
        """Hold the lock of building view ``name``: one process builds, the others wait. The
        lock file is removed before it is released (a process that opened it meanwhile and
        then finds the view missing builds it again: work lost, never a wrong view)."""
        path = self.root / f"{name}.lock"
        with _disk_full_names(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def kept(self) -> list[Path]:
        """The finished views of this store's format, used last first."""
        views = []
        for path in self.root.glob(f"{self.fmt}-*.sqlite"):
            with contextlib.suppress(FileNotFoundError):
                views.append((path.stat().st_mtime, path))
        return [path for _, path in sorted(views, reverse=True)]

    def prune(self, keep: int = KEEP) -> None:
        """Delete all but the ``keep`` finished views used last (processes serving one keep
        their own link to it)."""
        views = []
        for path in self.root.glob("*.sqlite"):
            with contextlib.suppress(FileNotFoundError):
                views.append((path.stat().st_mtime, path))
        for _, path in sorted(views, reverse=True)[keep:]:
            path.unlink(missing_ok=True)

    def _sweep(self) -> None:
        """Remove what dead processes left: their run directories, unfinished builds, locks."""
        now = time.time()
        for path in self.root.iterdir():
            try:
                if path.name.startswith("run-") and path.is_dir():
                    # a run takes its lock microseconds after making its directory
                    if (now - path.stat().st_mtime > _RUN_GRACE_S
                            and not _held(path / "lock", remove=False)):
                        shutil.rmtree(path, ignore_errors=True)
                elif ".building-" in path.name and now - path.stat().st_mtime > _STALE_S:
                    path.unlink(missing_ok=True)
                elif path.suffix == ".lock":
                    _held(path, remove=True)
            except FileNotFoundError:  # removed by another process meanwhile
                continue

    def remove_if_empty(self) -> None:
        """Remove the store's directory if nothing is in it (a server that could not start
        leaves nothing behind)."""
        with contextlib.suppress(OSError):
            self.root.rmdir()


def _held(lock: Path, remove: bool) -> bool:
    """Whether a living process holds ``lock``; with ``remove``, a lock file nobody holds is
    deleted. A missing file is held by nobody."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        if remove:
            lock.unlink(missing_ok=True)
        return False
    finally:
        os.close(fd)


class ViewRun:
    """One serving process's directory in a :class:`ViewStore`: the view files it answers
    from. Closing it removes the directory (files still open stay readable until closed)."""

    def __init__(self, store: ViewStore, directory: Path, lock_fd: int):
        self.store = store
        self.directory = directory
        self._lock_fd = lock_fd
        self._count = 0

    def _next(self) -> Path:
        self._count += 1
        return self.directory / f"view-{self._count}.sqlite"

    def obtain(self, stamp_now: Callable[[], str | None],
               build: Callable[[Path], None]) -> Obtained:
        """A view of the database as it is now, as a file of this run: taken from the store
        when it holds the view of the database's stamp, else built by ``build(path)`` (which
        writes a complete view file at ``path`` or raises), once for all processes asking at
        the same time, and kept if the database still holds that stamp once it is built. A
        database with no stamp (``stamp_now()`` is None) gets a view of this run only."""
        while True:
            stamp = stamp_now()
            if stamp is None:
                target = self._next()
                with _disk_full_names(target):
                    build(target)
                return Obtained(target, built=True, kept=False)
            name = f"{self.store.fmt}-{stamp}"
            taken = self._take(name)
            if taken is not None:
                return Obtained(taken, built=False, kept=True)
            with self.store.building(name):
                taken = self._take(name)
                if taken is not None:
                    return Obtained(taken, built=False, kept=True)
                if stamp_now() != stamp:
                    continue  # the database moved on while this process waited
                return self._build(name, stamp, stamp_now, build)

    def _build(self, name: str, stamp: str, stamp_now: Callable[[], str | None],
               build: Callable[[Path], None]) -> Obtained:
        building = self.store.root / f"{name}.sqlite.building-{secrets.token_hex(4)}"
        try:
            with _disk_full_names(building):
                build(building)
        except BaseException:
            building.unlink(missing_ok=True)
            raise
        target = self._next()
        # the view was read at some moment after the first look at the stamp; if the stamp is
        # unchanged after the build, nothing changed in between, and the view is that stamp's
        if stamp_now() != stamp:
            os.replace(building, target)  # newer than the stamp: this run's only
            return Obtained(target, built=True, kept=False)
        published = self.store.published(name)
        os.replace(building, published)
        self._link(published, target)
        self.store.prune()
        return Obtained(target, built=True, kept=True)

    def _take(self, name: str) -> Path | None:
        """The store's view ``name`` linked into this run, or None if it has none."""
        published = self.store.published(name)
        target = self._next()
        try:
            self._link(published, target)
        except FileNotFoundError:
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(published)  # used now: kept over older views
        return target

    @staticmethod
    def _link(source: Path, target: Path) -> None:
        with _disk_full_names(target):
            try:
                os.link(source, target)
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                shutil.copyfile(source, target)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        os.close(self._lock_fd)
        self.store.remove_if_empty()
