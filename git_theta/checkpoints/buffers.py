"""Buffers of large tensors, filled again once their tensor is stored.

A fresh buffer costs a page fault per 4 KiB page the first time it is written: on a small machine that is about as
much CPU as reading the bytes from git's pipe, and it lands on the one thread that reads them. The clean filter hands
each large tensor's buffer back once the tensor is stored (``give_back``), and ``read_exact`` fills it again for the
next tensor of the same size: a checkpoint of equal-sized layers then faults its pages in once.

A buffer is taken back only when nothing but its tensor refers to it: its reference count must equal that of a
buffer known to be held once, counted by the same code (so the figure holds on every Python version). A view of it
or a reference to it kept anywhere makes ``give_back`` leave it alone. The pool holds at most ``LIMIT``
bytes and is emptied after each file, so memory still tracks the largest tensors in flight.
"""

from __future__ import annotations

import sys
import threading
from typing import NamedTuple, Protocol

#: Buffers below this size are not worth keeping (and small tensors may be held on to, to be packed together).
MIN_SIZE = 1 << 20
#: Bytes the pool may hold: a few of the largest tensors.
LIMIT = 256 << 20


class BufferPool:
    """Spare buffers by size, handed out again by ``take``."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._spare: dict[int, list[bytearray]] = {}
        self._held = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bytearray | None:
        """A spare buffer of exactly ``size`` bytes (its old contents to be overwritten), if there is one."""
        if size < MIN_SIZE:
            return None
        with self._lock:
            spare = self._spare.get(size)
            if not spare:
                return None
            self._held -= size
            return spare.pop()

    def give_back(self, holder: Holder) -> None:
        """Keep ``holder.data`` for a later ``take`` if it is a large bytearray that nothing else refers to."""
        if type(holder.data) is not bytearray or len(holder.data) < MIN_SIZE:
            return
        with self._lock:
            if _references(holder) != _UNSHARED or self._held + len(holder.data) > self._limit:
                return
            buffer = holder.data
            self._spare.setdefault(len(buffer), []).append(buffer)
            self._held += len(buffer)

    def clear(self) -> None:
        """Let every spare buffer go."""
        with self._lock:
            self._spare.clear()
            self._held = 0


class Holder(Protocol):
    """What holds a buffer: a checkpoint's ``Tensor`` (a named tuple), its bytes in ``data``."""

    @property
    def data(self) -> object: ...


class _Sole(NamedTuple):
    """A holder shaped like ``Tensor``, for counting the references of a buffer held once."""

    spec: object
    data: object


def _references(holder: Holder) -> int:
    """References to ``holder.data``, counting this function's own."""
    buffer = holder.data
    return sys.getrefcount(buffer)


#: What ``_references`` says of a buffer that only its holder refers to.
_UNSHARED = _references(_Sole(None, bytearray(1)))

#: The pool that ``read_exact`` takes from, filled by the clean filter.
POOL = BufferPool()


#: glibc's mallopt parameters (malloc.h): blocks below the first come from the heap rather than a fresh mapping,
#: and freed heap memory above the second is what gets returned to the system.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Allocations from this size on still get a mapping of their own (returned to the system when freed).
MAPPED_FROM = 64 << 20
_kept: list[bool] = []


def keep_freed_memory() -> None:
    """Have glibc's malloc keep freed memory for the next allocation, once per process (elsewhere, nothing).

    Decoding, differencing and grouping a large checkpoint allocate and free blocks of about 1 MiB on every thread,
    and comparing one converts chunks of it to float64. By default glibc maps such blocks afresh and unmaps them
    when freed, so each costs a page fault per 4 KiB, and threads faulting at once contend for the process's memory
    map: a tenth of a whole fine-tune's `git add`, a sixth of its `git theta diff` (benchmarks/README.md). Called
    when a large file or tensor is met: ``ctypes`` costs 2.5 ms to import.
    """
    if _kept or not sys.platform.startswith("linux"):
        return
    _kept.append(True)
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has it too; any other libc may not)
        return
    mallopt(_M_MMAP_THRESHOLD, MAPPED_FROM)
    mallopt(_M_TRIM_THRESHOLD, 4 * MAPPED_FROM)
