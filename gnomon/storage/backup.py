"""``gnomon db backup`` and ``restore``: a consistent copy of a live database, and putting one
back, for either backend.

SQLite: one file, copied by SQLite's online backup API (:mod:`.sqlite.backup`). MongoDB: a
directory in mongodump's layout, exported under gnomon's write lock (:mod:`.mongodb.backup`).
A restore never overwrites a database that holds records unless told to (``force``): the
target is counted first, and the refusal names what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gnomon.credentials import mask_url
from gnomon.storage.backends import backend_for
from gnomon.storage.repository import Repository, StorageError
from gnomon.storage.sqlite.backup import backup_sqlite, restore_sqlite
from gnomon.storage.sqlite.repository import sqlite_path


@dataclass(frozen=True)
class Copied:
    """What a backup or restore copied: where from, where to, records per collection."""

    source: str
    target: str
    counts: dict[str, int]

    @property
    def records(self) -> int:
        return sum(self.counts.values())


def backup(url: str, dest: Path, repo: Repository | None = None) -> Copied:
    """Copy the database at ``url`` to ``dest`` (SQLite: a new file, or a file named by the
    time inside an existing directory; MongoDB: a directory); refuses an existing file."""
    kind = backend_for(url).name
    if kind == "sqlite":
        source = sqlite_path(url)
        if dest.is_dir():
            dest = dest / f"{source.stem}-backup.db"
        if dest.exists():
            raise StorageError(f"{dest} exists already; give a new file name")
        return Copied(str(source), str(dest), backup_sqlite(source, dest))
    # heavy: pymongo
    from gnomon.storage.mongodb.backup import export_mongodb

    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise StorageError(f"{dest} exists and is not an empty directory; give a new one")
    return Copied(mask_url(url), str(dest), export_mongodb(_mongo(url, repo), dest))


def restore(src: Path, url: str, repo: Repository, force: bool = False) -> Copied:
    """Put the backup ``src`` into the database at ``url`` (open as ``repo``); refuses a
    target holding records unless ``force``."""
    kind = backend_for(url).name
    held = {name: n for name, n in repo.stats().items() if n}
    if held and not force:
        what = ", ".join(f"{n} {name}" for name, n in held.items())
        raise StorageError(f"{mask_url(url)} is not empty ({what}); restoring would replace "
                           "them: use --force to overwrite")
    if not src.exists():
        raise StorageError(f"no backup at {src}")
    if kind == "sqlite":
        if src.is_dir():
            raise StorageError(f"{src} is a directory (a MongoDB backup); a SQLite database "
                               "restores from a backup file")
        target = sqlite_path(url)
        return Copied(str(src), str(target), restore_sqlite(src, target))
    # heavy: pymongo
    from gnomon.storage.mongodb.backup import import_mongodb

    if not src.is_dir():
        raise StorageError(f"{src} is a file (a SQLite backup); a MongoDB database restores "
                           "from a backup directory")
    return Copied(str(src), mask_url(url), import_mongodb(src, _mongo(url, repo)))


def _mongo(url: str, repo: Repository | None):
    # heavy: pymongo
    from gnomon.storage.mongodb.repository import MongoRepository

    if isinstance(repo, MongoRepository):
        return repo
    return MongoRepository(url)
