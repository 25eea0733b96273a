"""Ordered, bounded parallel map: both cores busy, a bounded amount of tensor data in memory."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

#: Small items may run ahead while a large one is processed, up to this many bytes in flight.
LOOKAHEAD_BYTES = 64 << 20


def workers() -> int:
    """Number of worker threads: one per core, at most four (zstd, sha256 and numpy copies release the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))


def ordered_map(
    executor: ThreadPoolExecutor,
    fn: Callable[[In], Out],
    items: Iterable[In],
    window: int,
    size: Callable[[In], int] = lambda item: 0,
) -> Iterator[Out]:
    """Yield ``fn(item)`` in input order.

    At most ``window`` items are in flight, or more while their ``size`` adds up to less than LOOKAHEAD_BYTES, so
    that many small tensors can be processed beside a large one without holding more than a few large ones.
    """
    pending: deque[tuple[Future[Out], int]] = deque()
    in_flight = 0
    try:
        for item in items:
            weight = size(item)
            pending.append((executor.submit(fn, item), weight))
            in_flight += weight
            while len(pending) >= window and (in_flight >= LOOKAHEAD_BYTES or len(pending) >= 64 * window):
                future, weight = pending.popleft()
                in_flight -= weight
                yield future.result()
        while pending:
            yield pending.popleft()[0].result()
    finally:
        for future, _ in pending:
            future.cancel()
