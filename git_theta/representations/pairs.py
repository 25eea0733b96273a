"""Two versions of a tensor stored against one keyframe, streamed side by side: each keyframe block decoded once.

A fine-tune is stored as a delta from the version before it, and later versions as deltas from the same keyframe.
Comparing two such versions block by block needs the keyframe's block for both: decoding it once for the pair,
instead of once per version, saves a third to a half of the work of a diff.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator

from git_theta.dtypes import bits_dtype
from git_theta.metadata import DENSE, TensorEntry
from git_theta.pipeline import Pending, Tasks, hash_executor, ordered_map
from git_theta.representations.read import open_update
from git_theta.storage.codec import Block, ObjectReader
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import ObjectStore

#: Pairs of blocks (of 1 MiB each) decoded ahead of the one being compared, and as many being hashed: enough
#: to keep two cores busy.
AHEAD = 4

_Blocks = tuple[Block, Block | None, Block | None]


def keyframe_oid(entry: TensorEntry) -> str | None:
    """The object a version's blocks are read from: its own when stored whole, its keyframe's when a delta of one;
    None when stored any other way (a small tensor's piece of a pack is read whole)."""
    if entry.packed is not None:
        return None
    if entry.update == DENSE:
        return entry.oid
    if entry.update == "delta" and len(entry.base) == 1:
        return entry.base[0].oid
    return None


def share_keyframe(old: TensorEntry, new: TensorEntry) -> bool:
    """Tell whether ``stream_pair`` applies: both versions read from the same keyframe, with the same dtype."""
    keyframe = keyframe_oid(old)
    return (
        keyframe is not None and keyframe == keyframe_oid(new) and old.dtype == new.dtype and old.nbytes == new.nbytes
    )


def stream_pair(
    store: ObjectStore, old: tuple[str, TensorEntry], new: tuple[str, TensorEntry], executor: Tasks
) -> Iterator[tuple[memoryview, memoryview]]:
    """Yield the bytes of two versions that ``share_keyframe``, block by block and side by side.

    Both are checked against their hashes after the last pair was taken (a mismatch raises ObjectError then), so
    read the iterator to its end. Blocks are decoded ahead on ``executor``.
    """
    pair = _Pair(store, old, new)
    digests = hashlib.sha256(), hashlib.sha256()
    hashing: deque[Pending[None]] = deque()
    try:
        for blocks in ordered_map(executor, pair.read, pair.blocks, AHEAD):
            # In order, on a thread of its own, while this one compares (each block is new).
            hashing.append(hash_executor().submit(_update, digests, blocks))
            while len(hashing) > AHEAD:
                hashing.popleft().result()
            yield blocks
        while hashing:
            hashing.popleft().result()
    finally:
        pair.close()
    for (label, entry), digest in zip((old, new), digests, strict=True):
        if "sha256:" + digest.hexdigest() != entry.hash:
            raise ObjectError(f"tensor {label}: its objects do not give the committed tensor (its hash differs)")


def _update(digests: tuple[hashlib._Hash, hashlib._Hash], blocks: tuple[memoryview, memoryview]) -> None:
    for digest, block in zip(digests, blocks, strict=True):
        digest.update(block)


class _Pair:
    """The keyframe's object and each version's delta object, if it has one, with their blocks lined up."""

    def __init__(self, store: ObjectStore, old: tuple[str, TensorEntry], new: tuple[str, TensorEntry]) -> None:
        label, entry = old if old[1].update == DENSE else new
        keyframe = entry if entry.update == DENSE else entry.base_entry()
        self.bits = bits_dtype(entry.dtype)
        self.keyframe = ObjectReader(store.open(keyframe.oid), keyframe.hash, keyframe.nbytes, keyframe.stored, label)
        self.deltas: list[ObjectReader | None] = []
        try:
            self.deltas = [None if e.update == DENSE else open_update(store, e, name) for name, e in (old, new)]
            self.blocks: list[_Blocks] = list(
                zip(self.keyframe.blocks, *map(self._blocks_of, self.deltas), strict=True)
            )
        except BaseException:
            self.close()
            raise

    def _blocks_of(self, delta: ObjectReader | None) -> list[Block | None]:
        if delta is None:
            return [None] * len(self.keyframe.blocks)
        if len(delta.parts()) != 1 or [b[2:4] for b in delta.blocks] != [b[2:4] for b in self.keyframe.blocks]:
            raise ObjectError(f"object {delta.label} does not line up with its base")
        return list(delta.blocks)

    def read(self, blocks: _Blocks) -> tuple[memoryview, memoryview]:
        """Decode one block of the keyframe, and each version's delta block at the same place."""
        base = self.keyframe.read_block(blocks[0])
        old, new = (self._apply(base, delta, block) for delta, block in zip(self.deltas, blocks[1:], strict=True))
        return old, new

    def _apply(self, base: memoryview, delta: ObjectReader | None, block: Block | None) -> memoryview:
        import numpy as np

        from git_theta.updates.delta import add_zigzag_difference

        if delta is None or block is None:
            return base
        zigzag = np.frombuffer(delta.read_block(block), self.bits)
        out = zigzag if zigzag.flags.writeable else None
        return add_zigzag_difference(np.frombuffer(base, self.bits), zigzag, out).view(np.uint8).data

    def close(self) -> None:
        """Close every object."""
        self.keyframe.close()
        for delta in self.deltas:
            if delta is not None:
                delta.close()
