"""Tensors streamed block by block: decoded ahead on every core, handed over in order, never held whole.

A checkout written this way starts sending bytes to git at once, keeps both cores decoding while git reads, and
needs memory for a few blocks instead of a few tensors.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future

from git_theta.metadata import DENSE, TensorEntry
from git_theta.pipeline import hash_executor, ordered_map
from git_theta.storage.codec import Block, ObjectReader
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import ObjectStore
from git_theta.storage.tensors import open_update, read_tensor

#: Blocks (of 1 MiB) decoded ahead of the one being written.
AHEAD = 8

_Source = "ObjectReader | _DeltaBlocks | _Rebuilt"
_Task = tuple[int, _Source, Block | tuple[Block, Block] | None, bool]
_Done = tuple[int, _Source, memoryview, bool]


def stream_tensors(
    store: ObjectStore, tensors: list[tuple[str, TensorEntry]], executor: Executor | None
) -> Iterator[Iterator[memoryview]]:
    """Yield, for each ``(label, entry)`` in order, an iterator over the tensor's bytes, block by block.

    Each tensor's iterator must be read to its end before the next is taken; a block is valid until the next one is
    read. Checks are those of ``codec.decode``: a failure raises ObjectError from the iterator, mid-tensor. Blocks
    are decoded ahead on ``executor``, or one at a time without one (from a thread of that executor, say).
    """
    if any(entry.update != DENSE for _, entry in tensors):
        _import_numpy_meanwhile()
    tasks = _tasks(store, tensors)
    results = ordered_map(executor, _decode, tasks, AHEAD) if executor is not None else map(_decode, tasks)
    for index in range(len(tensors)):
        yield _blocks_of(index, results)


def _import_numpy_meanwhile() -> None:
    """Updates are applied with numpy, which takes ~60 ms to import: import it while the first tensors stream."""
    if "numpy" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("numpy",)).start()  # joined at exit: never cut short


def _tasks(store: ObjectStore, tensors: list[tuple[str, TensorEntry]]) -> Iterator[_Task]:
    for index, (label, entry) in enumerate(tensors):
        if entry.update == "delta" and len(entry.base) == 1:  # a delta from a keyframe: block by block
            pair = _DeltaBlocks(store, entry, label)
            for position, blocks in enumerate(pair.blocks):
                yield index, pair, blocks, position == len(pair.blocks) - 1
            if not pair.blocks:
                yield index, pair, None, True
            continue
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


class _DeltaBlocks:
    """A tensor stored as a delta from a keyframe: each block is the keyframe's block plus the delta's, decoded as
    one task, so a fine-tuned version streams on every core like a dense one. The result is hashed as it goes."""

    codec = "delta"

    def __init__(self, store: ObjectStore, entry: TensorEntry, label: str) -> None:
        from git_theta.updates.base import numpy_dtype
        from git_theta.updates.delta import bits_dtype

        keyframe = entry.base_entry()
        self.label, self.hash = label, entry.hash
        self.bits = bits_dtype(numpy_dtype(entry.dtype))
        self.keyframe = ObjectReader(
            store.open(keyframe.oid),
            keyframe.hash,
            keyframe.nbytes,
            keyframe.stored,
            f"{keyframe.oid[:12]} (base of {label})",
        )
        self.delta = open_update(store, entry, label)
        if len(self.delta.parts()) != 1:
            raise ObjectError(f"object {label} is not the delta update the metadata describes")
        layout = [(start, length) for _, _, start, length, _ in self.keyframe.blocks]
        if layout != [(start, length) for _, _, start, length, _ in self.delta.blocks]:
            raise ObjectError(f"object {label} does not line up with its base")
        self.blocks = list(zip(self.keyframe.blocks, self.delta.blocks, strict=True))

    def read_block(self, blocks: tuple[Block, Block]) -> memoryview:
        import numpy as np

        from git_theta.updates.delta import add_zigzag_difference

        base, delta = self.keyframe.read_block(blocks[0]), self.delta.read_block(blocks[1])
        zigzag = np.frombuffer(delta, self.bits)
        new = add_zigzag_difference(np.frombuffer(base, self.bits), zigzag, zigzag if zigzag.flags.writeable else None)
        return memoryview(new.view(np.uint8))

    def check_hash(self, digest: hashlib._Hash) -> None:
        if "sha256:" + digest.hexdigest() != self.hash:
            raise ObjectError(f"tensor {self.label}: its delta and base do not give the committed tensor")

    def close(self) -> None:
        self.keyframe.close()
        self.delta.close()


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
    digest, hashing = hashlib.sha256(), deque[Future]()
    for got, reader, data, last in results:
        assert got == index, "a tensor's blocks were not read to the end"
        # Every tensor is checked against its hash (a rebuilt one already was): zstd's frame checksums do not cover
        # the object's header, which says how to ungroup the frames.
        hashed = reader.codec != "rebuilt"
        if hashed and last and not hashing:
            digest.update(data)  # a tensor of one block: not worth a thread
        elif hashed:  # in order, on a thread of its own, while this one hands the block over (each block is new)
            hashing.append(hash_executor().submit(digest.update, data))
            while len(hashing) > AHEAD:
                hashing.popleft().result()
        yield data
        if last:
            reader.close()
            if hashed:
                for update in hashing:
                    update.result()
                reader.check_hash(digest)
            return
