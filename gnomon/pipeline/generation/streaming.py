"""Streaming, sharding and seeding shared by every generator.

Generators are lazy: they yield candidates one at a time from lazily enumerated work items
(templates x substitutions, compositions x repeats). These helpers cut such streams into
chunks, split work items between processes or batch jobs, and derive one seed per work item
from the run's seed, so the same seed gives the same candidates whatever the number of
processes or shards.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of at most ``size`` items, holding one chunk in memory at a time."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, not {size}")
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed for one work item, a pure function of the run's seed and the item's keys."""
    text = "\x1f".join([str(seed), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def shard(items: Iterable[T], index: int, count: int) -> Iterator[T]:
    """Every ``count``-th item starting at ``index``: shard ``index`` of ``count``.

    The shards of one stream are disjoint and together give the whole stream, so ``count``
    batch jobs each running shard ``i`` produce exactly what one job would.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist")
    return itertools.islice(items, index, None, count)


def parallel_map(
    fn: Callable[[T], U],
    items: Iterable[T],
    processes: int = 1,
    max_in_flight: int | None = None,
) -> Iterator[U]:
    """``map(fn, items)`` over a process pool, in input order, with bounded look-ahead.

    At most ``max_in_flight`` items (default 2 per process) are submitted and not yet
    consumed, so neither the input nor the output piles up in memory however long the stream.
    ``fn`` must be picklable (a module-level function or a dataclass instance's method).
    With ``processes <= 1`` it runs in this process.
    """
    if processes <= 1:
        yield from map(fn, items)
        return
    limit = max_in_flight or 2 * processes
    pending: deque[Future[U]] = deque()
    with ProcessPoolExecutor(max_workers=processes) as pool:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
