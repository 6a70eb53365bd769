"""Storage: gnomon's records and the repository that keeps them (SQLite or MongoDB).

One package per backend (:mod:`gnomon.storage.sqlite`, :mod:`gnomon.storage.mongodb`), each
with its repository and its read view for ``gnomon serve``; :mod:`gnomon.storage.backends`
picks one by the URL's scheme.
"""

from __future__ import annotations

from gnomon.storage.backends import backend_for, check_url
from gnomon.storage.documents import (
    CalcState,
    Calculation,
    Campaign,
    Candidate,
    Entry,
    ModelVersion,
    Phase,
    Prediction,
    Round,
    StepState,
)
from gnomon.storage.repository import DatabaseMissing, Repository, StorageError


def open_repository(url: str, read_only: bool = False) -> Repository:
    """The repository behind a database URL: ``sqlite:///path``, ``mongodb://...``,
    ``mongomock://name`` (in-memory, for tests). Errors show the URL with its password masked.

    ``read_only``: for commands that only read. Nothing is created (a missing SQLite file is
    :class:`DatabaseMissing`; no schema, no index) and any write raises StorageError.
    """
    return backend_for(url).open_repository(url, read_only=read_only)


__all__ = [
    "Calculation",
    "CalcState",
    "Campaign",
    "Candidate",
    "DatabaseMissing",
    "Entry",
    "ModelVersion",
    "Phase",
    "Prediction",
    "Repository",
    "Round",
    "StepState",
    "StorageError",
    "check_url",
    "open_repository",
]
