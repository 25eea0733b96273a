"""How tensors become stored objects: one settings value that every writer of objects is handed.

The compression level and the threads that compress the blocks of a large tensor travel together in an
``Encoder``; writers call its methods and never name the codec, so a change of entropy coder stays in codec.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from git_theta.storage.codec import DEFAULT_LEVEL, MemorySink, Sink, encode, encode_update, sampled_size
from git_theta.storage.objects import ObjectStore

if TYPE_CHECKING:
    from git_theta.pipeline import Tasks

#: Objects up to this size are encoded in memory and written once: cheap for thousands of tiny tensors.
SMALL_OBJECT = 1 << 20

#: An update's named arrays: ``(name, dtype, shape, bytes)``.
Parts = list[tuple[str, str, tuple[int, ...], Any]]


class Encoder(NamedTuple):
    """The compression level, and the threads that compress a large tensor's blocks (None: this thread).

    A NamedTuple rather than a dataclass: ``dataclasses`` imports ``inspect``, 5 ms of every filter start."""

    level: int = DEFAULT_LEVEL
    executor: Tasks | None = None

    def store_dense(self, store: ObjectStore, data: memoryview, digest: str, group: int) -> tuple[str, int]:
        """Store a tensor whole (``group``: its element width); return ``(oid, stored size)``."""
        return _store(store, len(data), lambda sink: self.write_dense(sink, data, digest, group))

    def store_update(self, store: ObjectStore, parts: Parts, digest: str, update: dict[str, Any]) -> tuple[str, int]:
        """Store an update object (see ``codec.encode_update``); return ``(oid, stored size)``."""
        size = sum(len(data) for *_, data in parts)
        return _store(store, size, lambda sink: self.write_update(sink, parts, digest, update))

    def write_dense(self, sink: Sink, data: memoryview, digest: str, group: int) -> None:
        """Write the object of a tensor stored whole to ``sink``."""
        encode(data, digest, group, sink, self.level, self.executor)

    def write_update(self, sink: Sink, parts: Parts, digest: str, update: dict[str, Any]) -> None:
        """Write an update object to ``sink``."""
        encode_update(parts, digest, update, sink, self.level, self.executor)

    def estimated_size(self, data: Any, group: int, *, dense: bool = False) -> int:
        """The stored size of ``data`` estimated from a sample of its blocks (see ``codec.sampled_size``)."""
        return sampled_size(data, group, self.level, dense=dense)


def in_memory(write: Callable[[Sink], None]) -> bytes:
    """The object ``write(sink)`` produces, without storing it."""
    sink = MemorySink()
    write(sink)
    return sink.getvalue()


def _store(store: ObjectStore, size: int, write: Callable[[Sink], None]) -> tuple[str, int]:
    if size <= SMALL_OBJECT:
        return store.put(in_memory(write))
    writer = store.writer()
    try:
        write(writer)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise
