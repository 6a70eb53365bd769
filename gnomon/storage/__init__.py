"""Storage: gnomon's records and the repository that keeps them (SQLite or MongoDB)."""

from __future__ import annotations

from gnomon.credentials import mask_url
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
from gnomon.storage.repository import Repository, StorageError


def open_repository(url: str) -> Repository:
    """The repository behind a database URL: ``sqlite:///path``, ``mongodb://...``,
    ``mongomock://name`` (in-memory, for tests). Errors show the URL with its password masked."""
    if url.startswith("sqlite:///"):
        from gnomon.storage.sqlite import SQLiteRepository

        return SQLiteRepository(url[len("sqlite:///") :])
    if url.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
        from gnomon.storage.mongodb import MongoRepository

        return MongoRepository(url)
    raise StorageError(
        f"unsupported database URL {mask_url(url)!r}: use sqlite:///path or mongodb://..."
    )


__all__ = [
    "Calculation",
    "CalcState",
    "Campaign",
    "Candidate",
    "Entry",
    "ModelVersion",
    "Phase",
    "Prediction",
    "Repository",
    "Round",
    "StepState",
    "StorageError",
    "open_repository",
]
