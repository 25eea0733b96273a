"""Ordered, bounded parallel map: both cores busy, at most a few tensors in memory."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def workers() -> int:
    """Number of worker threads: one per core, at most four (zstd, sha256 and numpy copies release the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))


def ordered_map(
    executor: ThreadPoolExecutor, fn: Callable[[In], Out], items: Iterable[In], window: int
) -> Iterator[Out]:
    """Yield ``fn(item)`` in input order, keeping at most ``window`` items in flight."""
    pending: deque[Future[Out]] = deque()
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
