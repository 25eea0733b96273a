"""Ordered, bounded parallel maps: both cores busy, a bounded amount of tensor data in memory."""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from queue import SimpleQueue

In = TypeVar("In")
Out = TypeVar("Out")
Out_co = TypeVar("Out_co", covariant=True)

#: Small tensors may run ahead while a large one is processed, up to this many bytes in flight.
LOOKAHEAD_BYTES = 64 << 20
#: Files smaller than this are cleaned and smudged in one thread: no thread start-up or hand-offs.
INLINE_BELOW = 1 << 20


class Pending(Protocol[Out_co]):
    """A task handed to ``Tasks``: a ``Task`` of a ``Pool``, or ``Done`` for one run at once."""

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
    """Runs each task at once in the calling thread. For small files, where a hand-off to a thread and the threads'
    start cost more than the task."""

    def submit(self, fn: Callable[..., Out], /, *args: Any) -> Done[Out]:
        try:
            return Done(fn(*args), None)
        except Exception as exc:  # raised by result(), in order, as a Future would
            return Done(None, exc)


INLINE = Inline()


class TaskCancelled(Exception):
    """``result()`` of a task that was cancelled before it ran."""


class Task(Generic[Out]):
    """A task given to a ``Pool``: ``result()`` waits for it, then returns its value or raises its exception."""

    __slots__ = ("_args", "_error", "_finished", "_fn", "_state", "_value")

    def __init__(self, fn: Callable[..., Out], args: tuple[Any, ...]) -> None:
        self._fn, self._args = fn, args
        self._value: Out | None = None
        self._error: BaseException | None = None
        self._state = _WAITING
        self._finished = threading.Lock()  # held until the task has run (or was cancelled)
        self._finished.acquire()

    def run(self) -> None:
        """Run the task in this thread, unless it was cancelled."""
        with _STATES:
            if self._state != _WAITING:
                return
            self._state = _RUNNING
        try:
            self._value = self._fn(*self._args)
        except BaseException as exc:  # given back by result(), as a Future would
            self._error = exc
        finally:
            self._fn = self._args = None  # type: ignore[assignment]  # let what the task held go at once
            self._state = _FINISHED
            self._finished.release()

    def result(self) -> Out:
        with self._finished:
            pass
        if self._state == _CANCELLED:
            raise TaskCancelled("the task was cancelled")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # None only with an error

    def cancel(self) -> bool:
        """Cancel the task if it has not started; tell whether it was."""
        with _STATES:
            if self._state != _WAITING:
                return self._state == _CANCELLED
            self._state = _CANCELLED
        self._fn = self._args = None  # type: ignore[assignment]
        self._finished.release()
        return True


_WAITING, _RUNNING, _FINISHED, _CANCELLED = range(4)
#: Guards the moves of every task from waiting to running or cancelled.
_STATES = threading.Lock()


class Pool:
    """A pool of ``workers`` threads, started when it is first given a task.

    Like ``concurrent.futures.ThreadPoolExecutor``, without its import (it imports ``logging``: ~10 ms at the start
    of every filter). The threads are daemons: every task whose result matters is waited for by its caller.
    """

    def __init__(self, workers: int, name: str = "") -> None:
        self.workers, self.name = workers, name
        self._queue: SimpleQueue[Task[Any] | None] | None = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Out], /, *args: Any) -> Task[Out]:
        task = Task(fn, args)
        queue = self._queue
        if queue is None:
            queue = self._start()
        queue.put(task)
        return task

    def _start(self) -> SimpleQueue[Task[Any] | None]:
        with self._lock:
            if self._queue is None:
                from queue import SimpleQueue

                queue: SimpleQueue[Task[Any] | None] = SimpleQueue()
                for index in range(self.workers):
                    thread = threading.Thread(target=_work, args=(queue,), name=f"{self.name}_{index}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
                self._queue = queue
            return self._queue

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads once the tasks given so far have run (or been cancelled, with ``cancel_futures``)."""
        with self._lock:
            queue, threads = self._queue, self._threads
            self._queue, self._threads = None, []
        if queue is None:
            return
        if cancel_futures:
            from queue import Empty

            while True:
                try:  # the threads may take the last task between a check for one and the taking
                    task = queue.get_nowait()
                except Empty:
                    break
                if task is not None:
                    task.cancel()
        for _ in threads:
            queue.put(None)
        if wait:
            for thread in threads:
                thread.join()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _work(queue: SimpleQueue[Task[Any] | None]) -> None:
    while (task := queue.get()) is not None:
        task.run()


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


def no_blas_threads() -> None:
    """Keep OpenBLAS from starting threads of its own when numpy loads, unless the user set their number.

    Commands that compare and rebuild tensors run them on this module's threads and never call BLAS for long;
    OpenBLAS's threads busy-wait for work after numpy's import (0.1 CPU-s each here, a tenth of a checkout's
    samples) on the cores those threads need. Set before numpy loads, and only where no child process runs a
    user's code (a hook, a soup's evaluation command), which would inherit it.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def import_meanwhile(module: str) -> threading.Thread | None:
    """Start importing ``module`` on a thread of its own, unless it is loaded, and return that thread: a slow import
    (numpy's, ~60 ms) then runs while this thread waits on git or the disk. Whoever needs the module imports it as
    usual, waiting for the import to finish, or seeing its error. The thread is joined at exit, never cut short."""
    if module in sys.modules:
        return None
    thread = threading.Thread(target=_import_quietly, args=(module,), name="git-theta-import")
    thread.start()
    return thread


def _import_quietly(module: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        pass  # raised again, and reported, where the module is needed


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
