"""Reusable byte buffers: filling memory that was already touched is several times faster than fresh pages."""

from __future__ import annotations

import threading


class BufferPool:
    """Hands out bytearrays of at least a requested size and takes them back for reuse."""

    def __init__(self, keep: int = 8) -> None:
        self._free: list[bytearray] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self, size: int) -> bytearray:
        """Return a buffer of at least ``size`` bytes (its contents are undefined)."""
        with self._lock:
            fitting = [buffer for buffer in self._free if len(buffer) >= size]
            if fitting:
                buffer = min(fitting, key=len)
                self._free.remove(buffer)
                return buffer
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        """Return a buffer that nobody uses any more."""
        with self._lock:
            self._free.append(buffer)
            if len(self._free) > self._keep:
                self._free.remove(min(self._free, key=len))
