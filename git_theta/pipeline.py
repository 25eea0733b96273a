"""Ordered, bounded parallel maps: both cores busy, a bounded amount of tensor data in memory."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from functools import cache
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

#: Small tensors may run ahead while a large one is processed, up to this many bytes in flight.
LOOKAHEAD_BYTES = 64 << 20


def workers() -> int:
    """Number of worker threads: one per core, at most four (zstd, sha256 and numpy copies release the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))


@cache
def frame_executor() -> ThreadPoolExecutor:
    """Threads for the blocks of one large tensor; separate from the tensor workers that wait on them."""
    return ThreadPoolExecutor(workers(), thread_name_prefix="git-theta-frames")


@cache
def hash_executor() -> ThreadPoolExecutor:
    """One thread that hashes a streamed tensor's blocks in order, beside the thread that writes them."""
    return ThreadPoolExecutor(1, thread_name_prefix="git-theta-hash")


def ordered_map(
    executor: Executor,
    fn: Callable[[In], Out],
    items: Iterable[In],
    window: int,
    size: Callable[[In], int] | None = None,
) -> Iterator[Out]:
    """Yield ``fn(item)`` in input order, with at most ``window`` items in flight.

    With ``size``, more items may be in flight while their sizes add up to less than LOOKAHEAD_BYTES, so that many
    small tensors are processed beside a large one without holding more than a few large ones.
    """
    pending: deque[tuple[Future[Out], int]] = deque()
    in_flight = 0
    try:
        for item in items:
            weight = size(item) if size is not None else LOOKAHEAD_BYTES
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


def ordered_runs(
    executor: Executor,
    fn: Callable[[In], Out],
    items: Iterable[In],
    window: int,
    size: Callable[[In], int],
    run_bytes: int = 1 << 20,
    run_items: int = 16,
) -> Iterator[Out]:
    """``ordered_map`` over runs of consecutive small items (up to ``run_bytes`` or ``run_items`` each): one hand-off
    to a worker per run instead of per item, which is most of the cost of a tiny tensor."""

    def apply(run: list[In]) -> list[Out]:
        return [fn(item) for item in run]

    def weight(run: list[In]) -> int:
        return sum(size(item) for item in run)

    for results in ordered_map(executor, apply, runs(items, size, run_bytes, run_items), window, size=weight):
        yield from results


def runs(items: Iterable[In], size: Callable[[In], int], run_bytes: int, run_items: int) -> Iterator[list[In]]:
    """``items`` in runs of consecutive items, each ending once it holds ``run_bytes`` or ``run_items``."""
    run: list[In] = []
    total = 0
    for item in items:
        run.append(item)
        total += size(item)
        if total >= run_bytes or len(run) >= run_items:
            yield run
            run, total = [], 0
    if run:
        yield run
