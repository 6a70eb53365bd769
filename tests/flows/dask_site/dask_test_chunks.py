"""Chunk functions for tests/flows/test_distributed.py, importable by Dask workers (this
directory goes on their PYTHONPATH): a worker unpickles a task's function by importing its
module, and it cannot import the test modules themselves."""

from __future__ import annotations

import os
from pathlib import Path


def square_dying_once(marks: str, chunk: list[int]) -> list[int]:
    """Squares; the first time it sees a chunk holding 3 it kills its own worker process."""
    mark = Path(marks) / f"died-{chunk[0]}"
    if 3 in chunk and not mark.exists():
        mark.write_text(str(os.getpid()))
        os._exit(1)
    return [x * x for x in chunk]


def fails_on_five(chunk: list[int]) -> list[int]:
    if 5 in chunk:
        raise ValueError(f"bad item 5 in {chunk}")
    return chunk
