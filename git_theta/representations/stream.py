"""Tensors streamed block by block: decoded ahead on every core, handed over in order, never held whole.

A checkout written this way starts sending bytes to git at once, keeps both cores decoding while git reads, and
needs memory for a few blocks instead of a few tensors.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from typing import Any, TypeAlias, cast

from git_theta.checkpoints.buffers import keep_freed_memory
from git_theta.metadata import DENSE, TensorEntry
from git_theta.pipeline import Pending, Tasks, hash_executor, import_meanwhile, ordered_map, runs
from git_theta.representations.read import DeltaBlocks, read_tensor
from git_theta.storage.codec import BLOCK, Block, ObjectReader
from git_theta.storage.objects import ObjectStore
from git_theta.storage.packs import open_reader

#: Runs of blocks (a block of 1 MiB, or up to RUN_TASKS smaller ones) decoded ahead of the one being written.
AHEAD = 8
#: Most blocks in one run: each is an open object, until its tensor is written.
RUN_TASKS = 16
#: A checkout of this many tensor bytes imports numpy, in the background, to un-group them: its import costs ~60 ms
#: once, and moving sign bits back with Python integers costs 3.7 ms per MiB (0.8 ms with numpy; see bytegroup.py).
NUMPY_CHECKOUT = 16 << 20

_Source: TypeAlias = "ObjectReader | DeltaBlocks | _Rebuilt"
_Task = tuple[int, _Source, Block | tuple[Block, Block] | None, bool]
_Done = tuple[int, _Source, memoryview, bool]


def stream_tensors(
    store: ObjectStore, tensors: list[tuple[str, TensorEntry]], executor: Tasks | None
) -> Iterator[Iterator[memoryview]]:
    """Yield, for each ``(label, entry)`` in order, an iterator over the tensor's bytes, block by block.

    Each tensor's iterator must be read to its end before the next is taken; a block is valid until the next one is
    read. Checks are those of ``codec.decode``: a failure raises ObjectError from the iterator, mid-tensor. Blocks
    are decoded ahead on ``executor``, or one at a time without one (from a thread of that executor, say).
    """
    large = sum(entry.nbytes for _, entry in tensors) >= NUMPY_CHECKOUT
    if large:
        keep_freed_memory()
    if large or any(entry.update != DENSE for _, entry in tensors):
        import_meanwhile("numpy")  # to un-group large tensors and apply updates: loaded as the first tensors stream
    tasks = _tasks(store, tensors)
    if executor is None:
        results: Iterator[_Done] = map(_decode, tasks)
    else:  # a run of tiny blocks is one hand-off to a worker: for thousands of tiny tensors, the hand-offs dominate
        decoded = ordered_map(executor, _decode_run, runs(tasks, _task_size, BLOCK, RUN_TASKS), AHEAD)
        results = (done for run in decoded for done in run)
    for index in range(len(tensors)):
        yield _blocks_of(index, results)


def _tasks(store: ObjectStore, tensors: list[tuple[str, TensorEntry]]) -> Iterator[_Task]:
    for index, (label, entry) in enumerate(tensors):
        if entry.update == "delta" and len(entry.base) == 1:  # a delta from a keyframe: block by block
            pair = DeltaBlocks(store, entry, label)
            for position, blocks in enumerate(pair.blocks):
                yield index, pair, blocks, position == len(pair.blocks) - 1
            if not pair.blocks:
                yield index, pair, None, True
            continue
        if entry.update != DENSE:  # rebuilt from its base chain, whole and verified
            yield index, _Rebuilt(store, entry, label), None, True
            continue
        reader = open_reader(store, entry, label)
        if not reader.blocks:
            yield index, reader, None, True
        for position, block in enumerate(reader.blocks):
            yield index, reader, block, position == len(reader.blocks) - 1


def _task_size(task: _Task) -> int:
    _, reader, block, _ = task
    if isinstance(reader, _Rebuilt):
        return reader.entry.nbytes
    if isinstance(reader, DeltaBlocks):
        return cast(tuple[Block, Block], block)[0][3]
    return cast(Block, block)[3] if block else 0


def _decode_run(run: list[_Task]) -> list[_Done]:
    return [_decode(task) for task in run]


def _decode(task: _Task) -> _Done:
    index, reader, block, last = task
    if isinstance(reader, _Rebuilt):
        return index, reader, reader.read(), last
    # Each reader gets what it listed: an ObjectReader a block, DeltaBlocks a pair of them (_Task cannot tie these).
    return index, reader, reader.read_block(cast(Any, block)) if block else memoryview(b""), last


class _Rebuilt:
    """A tensor stored as an update: handed over in one piece once rebuilt (``read_tensor`` checks its hash)."""

    def __init__(self, store: ObjectStore, entry: TensorEntry, label: str) -> None:
        self.store, self.entry, self.label = store, entry, label

    def read(self) -> memoryview:
        return read_tensor(self.store, self.entry, self.label)

    def close(self) -> None:
        pass


def _blocks_of(index: int, results: Iterator[_Done]) -> Iterator[memoryview]:
    digest = hashlib.sha256()
    hashing: deque[Pending[None]] = deque()  # not deque[...](): a generic alias costs a microsecond per tensor
    for got, reader, data, last in results:
        assert got == index, "a tensor's blocks were not read to the end"
        # Every tensor is checked against its hash (a rebuilt one already was): zstd's frame checksums do not cover
        # the object's header, which says how to ungroup the frames.
        hashed = not isinstance(reader, _Rebuilt)
        if hashed and last and not hashing:
            digest.update(data)  # a tensor of one block: not worth a thread
        elif hashed:  # in order, on a thread of its own, while this one hands the block over (each block is new)
            hashing.append(hash_executor().submit(digest.update, data))
            while len(hashing) > AHEAD:
                hashing.popleft().result()
        yield data
        if last:
            reader.close()
            if not isinstance(reader, _Rebuilt):  # hashed
                for update in hashing:
                    update.result()
                reader.check_hash(digest)
            return
