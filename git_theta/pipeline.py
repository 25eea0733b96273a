"""Ordered, bounded parallel maps: both cores busy, a bounded amount of tensor data in memory."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

In = TypeVar("In")
Out = TypeVar("Out")
Out_co = TypeVar("Out_co", covariant=True)

#: Small tensors may run ahead while a large one is processed, up to this many bytes in flight.
LOOKAHEAD_BYTES = 64 << 20
#: Files smaller than this are cleaned and smudged in one thread: no thread start-up or hand-offs.
INLINE_BELOW = 1 << 20


class Pending(Protocol[Out_co]):
    """A task handed to ``Tasks``: a ``concurrent.futures.Future``, or ``Done`` for one run at once."""

    def result(self) -> Out_co: ...

    def cancel(self) -> bool: ...


class Tasks(Protocol):
    """Where tasks run: a ``Pool`` (or any ``concurrent.futures.Executor``), or ``INLINE``."""

    def submit(self, fn: Callable[..., Out], /, *args: Any) -> Pending[Out]: ...


class Done(Generic[Out]):
    """A task ``Inline`` already ran: its result, or the exception it raised, given back by ``result()``."""

    __slots__ = ("_error", "_value")

    def __init__(self, value: Out | None, error: Exception | None) -> None:
        self._value, self._error = value, error

    def result(self) -> Out:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # None only with an error

    def cancel(self) -> bool:
        return False


class Inline:
    """Runs each task at once in the calling thread. For small files, where a hand-off to a thread costs more than
    the task, and importing ``concurrent.futures`` (which imports ``logging``, ~7 ms) more than the whole file."""

    def submit(self, fn: Callable[..., Out], /, *args: Any) -> Done[Out]:
        try:
            return Done(fn(*args), None)
        except Exception as exc:  # raised by result(), in order, as a Future would
            return Done(None, exc)


INLINE = Inline()


class Pool:
    """A thread pool that starts its threads, and imports ``concurrent.futures``, when it is first given a task."""

    def __init__(self, workers: int, name: str = "") -> None:
        self.workers, self.name = workers, name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Out], /, *args: Any) -> Pending[Out]:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
                pool = self._pool
        return pool.submit(fn, *args)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def tasks_for(nbytes: int | None, pool: Tasks) -> Tasks:
    """Where to run the tasks of a file of ``nbytes`` (None: unknown): ``INLINE`` if it is small, else ``pool``."""
    return INLINE if nbytes is not None and nbytes < INLINE_BELOW else pool


def workers() -> int:
    """Number of worker threads: one per core, at most four (zstd, sha256 and numpy copies release the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))


@cache
def frame_executor() -> Pool:
    """Threads for the blocks of one large tensor; separate from the tensor workers that wait on them."""
    return Pool(workers(), "git-theta-frames")


@cache
def hash_executor() -> Pool:
    """One thread that hashes a streamed tensor's blocks in order, beside the thread that writes them."""
    return Pool(1, "git-theta-hash")


def ordered_map(
    executor: Tasks,
    fn: Callable[[In], Out],
    items: Iterable[In],
    window: int,
    size: Callable[[In], int] | None = None,
) -> Iterator[Out]:
    """Yield ``fn(item)`` in input order, with at most ``window`` items in flight.

    With ``size``, more items may be in flight while their sizes add up to less than LOOKAHEAD_BYTES, so that many
    small tensors are processed beside a large one without holding more than a few large ones.
    """
    pending: deque[tuple[Pending[Out], int]] = deque()
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
    executor: Tasks,
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
