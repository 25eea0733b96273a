"""A small ordered, bounded parallel map: tensors are hashed, decoded and compared on every core."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def workers() -> int:
    """Worker threads: one per core, at most four (sha256, zstd and numpy release the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))


def ordered_map(fn: Callable[[In], Out], items: Iterable[In]) -> Iterator[Out]:
    """Yield ``fn(item)`` in input order with only a few items in flight, so a streamed file is never held whole."""
    window = workers() + 1
    pending: deque[Future[Out]] = deque()
    with ThreadPoolExecutor(workers()) as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
