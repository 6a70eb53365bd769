"""Backups of a MongoDB database in mongodump's layout, taken and restored under gnomon's
write lock.

A backup is a directory ``DEST/<database>/`` holding, per gnomon collection, ``<name>.bson``
(the documents, one BSON document after another) and ``<name>.metadata.json`` (its indexes,
extended JSON): the layout ``mongodump`` writes and ``mongorestore --dir DEST`` reads, as
``gnomon db restore DEST`` does (tested through gnomon on mongomock; the MongoDB tools have not
run on it here). ``DEST/gnomon-backup.json`` lists what was copied.

Consistency: the export runs inside ``transaction()``, whose lease keeps every other gnomon
writer waiting (they wait, they do not fail), so the copy is one state of the database even
without a replica set. Collections gnomon derives (the serve view) or keeps for itself (the
write lock) are not copied. A restore loads each collection into a staging collection first
and renames them over the originals only when all are loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
from bson import json_util
from bson.errors import BSONError
from pymongo.errors import PyMongoError

from gnomon.credentials import mask_url
from gnomon.storage.documents import RECORD_TYPES
from gnomon.storage.mongodb.repository import MongoRepository
from gnomon.storage.repository import StorageError

MANIFEST = "gnomon-backup.json"
FORMAT = "gnomon-mongodump-1"
_BATCH = 1000


def export_mongodb(repo: MongoRepository, dest: Path) -> dict[str, int]:
    """Write every gnomon collection of ``repo`` with its indexes under ``dest``; returns the
    documents per collection."""
    folder = dest / repo.db.name
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    try:
        with repo.transaction():
            for name in RECORD_TYPES:
                counts[name] = _export_collection(repo, name, folder)
    except PyMongoError as exc:
        raise StorageError(f"could not back up {mask_url(repo.url)}: {exc}") from exc
    (dest / MANIFEST).write_text(json.dumps(
        {"format": FORMAT, "database": repo.db.name, "collections": counts}, indent=1))
    return counts


def _export_collection(repo: MongoRepository, name: str, folder: Path) -> int:
    collection = repo.db[name]
    n = 0
    partial = folder / f".{name}.bson.partial"
    with partial.open("wb") as out:
        for doc in collection.find({}).sort("_id", 1):
            out.write(bson.encode(doc))
            n += 1
    partial.replace(folder / f"{name}.bson")
    indexes = [{"v": 2, "name": index_name, "key": dict(info["key"]),
                **{k: v for k, v in info.items() if k in ("unique", "sparse")}}
               for index_name, info in collection.index_information().items()]
    metadata = {"options": {}, "indexes": indexes, "collectionName": name}
    (folder / f"{name}.metadata.json").write_text(json_util.dumps(metadata))
    return n


def backup_counts(src: Path) -> tuple[str, dict[str, int]]:
    """The database name and per-collection counts a backup directory says it holds."""
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise StorageError(f"{src} is not a gnomon MongoDB backup: no readable {MANIFEST} "
                           f"({exc})") from None
    if manifest.get("format") != FORMAT:
        raise StorageError(f"{src}: unknown backup format {manifest.get('format')!r}")
    return manifest["database"], manifest["collections"]


def _documents(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        yield from bson.decode_file_iter(fh)


def import_mongodb(src: Path, repo: MongoRepository) -> dict[str, int]:
    """Replace the gnomon collections of ``repo`` by those of the backup ``src``."""
    database, counts = backup_counts(src)
    folder = src / database
    staged: list[tuple[str, str]] = []
    try:
        with repo.transaction():
            for name in counts:
                if name not in RECORD_TYPES:
                    raise StorageError(f"{src}: {name} is not a gnomon collection")
                staging = f"{name}__restore"
                repo.db[staging].drop()
                _load(repo, folder, name, staging)
                staged.append((staging, name))
            present = set(repo.db.list_collection_names())
            for staging, name in staged:
                if staging in present:
                    repo.db[staging].rename(name, dropTarget=True)
                else:  # an empty collection in the backup: nothing was staged
                    repo.db[name].delete_many({})
    except (PyMongoError, OSError, BSONError) as exc:
        for staging, _ in staged:
            repo.db[staging].drop()
        raise StorageError(f"could not restore {src} into {mask_url(repo.url)}: {exc}") from exc
    return counts


def _load(repo: MongoRepository, folder: Path, name: str, staging: str) -> None:
    target = repo.db[staging]
    batch: list[dict[str, Any]] = []
    for doc in _documents(folder / f"{name}.bson"):
        batch.append(doc)
        if len(batch) >= _BATCH:
            target.insert_many(batch, ordered=True)
            batch = []
    if batch:
        target.insert_many(batch, ordered=True)
    metadata = json_util.loads((folder / f"{name}.metadata.json").read_text())
    for index in metadata.get("indexes", []):
        if index["name"] == "_id_":
            continue
        options = {k: index[k] for k in ("unique", "sparse") if k in index}
        target.create_index(list(index["key"].items()), name=index["name"], **options)
