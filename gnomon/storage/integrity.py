"""``gnomon db check``'s storage half: the file, the documents, and the links between records.

Three kinds of damage a database can carry without any command noticing until it reads the
wrong record: a file SQLite itself finds corrupt (``PRAGMA integrity_check``); a document that
no longer validates against its record type (edited by hand, written by a version with other
fields); and a record that points at one that is not there (a calculation whose entry was
deleted, a phase without its entry). Each problem is one line naming the collection, the
record and what is wrong. The hull half (stored e_above_hull against a fresh hull) needs the
thermodynamics layer and lives there (:mod:`gnomon.pipeline.thermo.hull_audit`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydantic import ValidationError

from gnomon.storage.backends import backend_for
from gnomon.storage.documents import RECORD_TYPES, CalcState
from gnomon.storage.repository import Repository
from gnomon.storage.sqlite.backup import integrity_problems
from gnomon.storage.sqlite.repository import sqlite_path

#: (collection, field, collection it names): every stored reference between records.
LINKS: tuple[tuple[str, str, str], ...] = (
    ("predictions", "candidate_id", "candidates"),
    ("calculations", "candidate_id", "candidates"),
    ("calculations", "entry_id", "entries"),
    ("entries", "calculation_id", "calculations"),
    ("entries", "candidate_id", "candidates"),
    ("entries", "parent_entry_id", "entries"),
    ("candidates", "parent_candidate_id", "candidates"),
    ("candidates", "parent_entry_id", "entries"),
    ("phases", "id", "entries"),
    ("rounds", "campaign", "campaigns"),
    ("models", "parent", "models"),
)


@dataclass
class _Seen:
    """Ids per collection and the references read while validating, for the link check."""

    ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    refs: list[tuple[str, str, str, str, str]] = field(default_factory=list)


def file_problems(url: str) -> list[str]:
    """What the backend's own integrity check finds (SQLite: ``PRAGMA integrity_check``;
    MongoDB keeps its files' integrity to the server)."""
    if backend_for(url).name != "sqlite" or not sqlite_path(url).is_file():
        return []  # opening the repository says what is missing
    return integrity_problems(sqlite_path(url))


def record_problems(repo: Repository) -> Iterator[str]:
    """Every document that fails its record type, and every reference to a missing record."""
    seen = _Seen()
    for collection, record_type in RECORD_TYPES.items():
        links = [(f, target) for c, f, target in LINKS if c == collection]
        for doc in repo.find(collection):
            rid = str(doc.get("id"))
            seen.ids[collection].add(rid)
            try:
                record_type.from_doc(doc)
            except ValidationError as exc:
                yield f"{collection} {rid}: invalid document: {_first_error(exc)}"
            for name, target in links:
                value = doc.get(name)
                if value is not None:
                    seen.refs.append((collection, rid, name, str(value), target))
            problem = _state_problem(collection, doc)
            if problem:
                yield f"{collection} {rid}: {problem}"
    for collection, rid, name, value, target in seen.refs:
        if value not in seen.ids[target]:
            what = "has no entry" if name == "id" else f"{name} {value} is not in {target}"
            yield f"{collection} {rid}: orphaned: {what}"
    for rid in sorted(seen.ids["entries"] - seen.ids["phases"]):
        yield f"entries {rid}: no phase (its hull was never computed; `gnomon db rebuild-hull`)"


def _state_problem(collection: str, doc: dict) -> str | None:
    """A record whose fields contradict each other."""
    if collection == "calculations" and doc.get("state") == CalcState.done.value \
            and not doc.get("entry_id"):
        return "state done but no entry_id"
    return None


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "document"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"
