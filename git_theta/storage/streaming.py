"""Tensors streamed block by block: decoded ahead on every core, handed over in order, never held whole.

A checkout written this way starts sending bytes to git at once, keeps both cores decoding while git reads, and
needs memory for a few blocks instead of a few tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import Executor

from git_theta.metadata import DENSE, TensorEntry
from git_theta.pipeline import ordered_map
from git_theta.storage.codec import Block, ObjectReader
from git_theta.storage.objects import ObjectStore
from git_theta.storage.tensors import read_tensor

#: Blocks (of 1 MiB) decoded ahead of the one being written.
AHEAD = 8

_Task = tuple[int, "ObjectReader | _Rebuilt", Block | None, bool]
_Done = tuple[int, "ObjectReader | _Rebuilt", memoryview, bool]


def stream_tensors(
    store: ObjectStore, tensors: list[tuple[str, TensorEntry]], executor: Executor
) -> Iterator[Iterator[memoryview]]:
    """Yield, for each ``(label, entry)`` in order, an iterator over the tensor's bytes, block by block.

    Each tensor's iterator must be read to its end before the next is taken; a block is valid until the next one is
    read. Checks are those of ``codec.decode``: a failure raises ObjectError from the iterator, mid-tensor.
    """
    results = ordered_map(executor, _decode, _tasks(store, tensors), AHEAD)
    for index in range(len(tensors)):
        yield _blocks_of(index, results)


def _tasks(store: ObjectStore, tensors: list[tuple[str, TensorEntry]]) -> Iterator[_Task]:
    for index, (label, entry) in enumerate(tensors):
        if entry.update != DENSE:  # rebuilt from its base chain, whole and verified
            yield index, _Rebuilt(store, entry, label), None, True
            continue
        reader = ObjectReader(store.open(entry.oid), entry.hash, entry.nbytes, entry.stored, label)
        if not reader.blocks:
            yield index, reader, None, True
        for position, block in enumerate(reader.blocks):
            yield index, reader, block, position == len(reader.blocks) - 1


def _decode(task: _Task) -> _Done:
    index, reader, block, last = task
    if isinstance(reader, _Rebuilt):
        return index, reader, reader.read(), last
    return index, reader, reader.read_block(block) if block else memoryview(b""), last


class _Rebuilt:
    """A tensor stored as an update: handed over in one piece once rebuilt (``read_tensor`` checks its hash)."""

    codec = "rebuilt"

    def __init__(self, store: ObjectStore, entry: TensorEntry, label: str) -> None:
        self.store, self.entry, self.label = store, entry, label

    def read(self) -> memoryview:
        return read_tensor(self.store, self.entry, self.label)

    def close(self) -> None:
        pass


def _blocks_of(index: int, results: Iterator[_Done]) -> Iterator[memoryview]:
    digest = hashlib.sha256()
    for got, reader, data, last in results:
        assert got == index, "a tensor's blocks were not read to the end"
        if reader.codec == "raw":  # zstd frames carry their own checksums; raw objects are hashed
            digest.update(data)
        yield data
        if last:
            reader.close()
            if reader.codec == "raw":
                reader.check_hash(digest)
            return
