"""The ordered, bounded parallel maps and the thread pool under them."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from git_theta import pipeline
from git_theta.pipeline import INLINE, Pool, TaskCancelled, ordered_map, ordered_runs, tasks_for


def test_ordered_map_keeps_input_order_and_bounds_what_is_in_flight() -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def slow_square(value: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.002 * (value % 3))  # later items often finish first
        with lock:
            running -= 1
        return value * value

    with Pool(3, "test") as pool:
        assert list(ordered_map(pool, slow_square, range(40), window=3)) == [value * value for value in range(40)]
    assert 1 <= most <= 3


def test_ordered_runs_hands_small_items_over_in_runs() -> None:
    threads: set[str] = set()

    def name(value: int) -> int:
        threads.add(threading.current_thread().name)
        return value

    with Pool(2, "runs") as pool:
        out = list(ordered_runs(pool, name, range(100), window=2, size=lambda _: 1, run_items=16))
    assert out == list(range(100)) and all(thread.startswith("runs_") for thread in threads)


def test_a_task_error_is_raised_by_its_result_in_order() -> None:
    def fail_on_three(value: int) -> int:
        if value == 3:
            raise ValueError("three")
        return value

    for tasks in (Pool(2, "errors"), INLINE):
        seen = []
        with pytest.raises(ValueError, match="three"):
            for value in ordered_map(tasks, fail_on_three, range(10), window=2):
                seen.append(value)
        assert seen == [0, 1, 2]
        if isinstance(tasks, Pool):
            tasks.shutdown()


def test_cancel_stops_a_waiting_task_and_shutdown_cancels_what_waits() -> None:
    started, gate = threading.Event(), threading.Event()
    ran: list[int] = []

    def block() -> bool:
        started.set()
        return gate.wait()

    pool = Pool(1, "cancel")
    first = pool.submit(block)
    second = pool.submit(ran.append, 2)
    third = pool.submit(ran.append, 3)
    started.wait()
    assert not first.cancel()  # running: it cannot be cancelled
    assert second.cancel() and second.cancel()  # cancelled, and says so again
    gate.set()
    assert first.result() is True and third.result() is None
    with pytest.raises(TaskCancelled):
        second.result()
    assert ran == [3]

    started.clear()
    gate.clear()
    blocker = pool.submit(block)
    waiting = pool.submit(ran.append, 4)
    started.wait()
    threading.Timer(0.05, gate.set).start()
    pool.shutdown(wait=True, cancel_futures=True)
    assert blocker.result() is True and ran == [3]
    with pytest.raises(TaskCancelled):
        waiting.result()


def test_small_files_run_inline_and_large_ones_on_the_pool() -> None:
    pool = Pool(2, "choice")
    assert tasks_for(1000, pool) is INLINE
    assert tasks_for(None, pool) is pool and tasks_for(64 << 20, pool) is pool
    assert INLINE.submit(len, b"abc").result() == 3


def test_blas_threads_are_limited_unless_the_user_chose_their_number(monkeypatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    pipeline.no_blas_threads()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "8")
    pipeline.no_blas_threads()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "8"


def test_a_module_is_imported_meanwhile_once_and_a_failed_import_is_left_to_its_importer(monkeypatch) -> None:
    escaped: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    monkeypatch.delitem(sys.modules, "git_theta.diffs.numeric", raising=False)
    thread = pipeline.import_meanwhile("git_theta.diffs.numeric")
    assert thread is not None
    thread.join()
    assert "git_theta.diffs.numeric" in sys.modules
    assert pipeline.import_meanwhile("git_theta.diffs.numeric") is None  # loaded: no second thread

    missing = pipeline.import_meanwhile("git_theta.no_such_module")
    assert missing is not None
    missing.join()
    assert escaped == []  # the error is raised again where the module is needed, not printed by the thread
    with pytest.raises(ImportError):
        __import__("git_theta.no_such_module")
