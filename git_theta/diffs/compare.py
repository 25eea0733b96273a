"""Comparing two sides of a checkpoint tensor by tensor: equal hashes are skipped, only changed tensors are read.

The statistics (numeric.py) need numpy, imported at the first comparison: what changed is listed from git while it
loads (cli/diff.py starts it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from git_theta.checkpoints.base import Checkpoint, Decoded, Tensor
from git_theta.diffs.parallel import ordered_map
from git_theta.diffs.result import ADDED, MODIFIED, REMOVED, Change, CheckpointDiff, Layout, TensorDiff
from git_theta.diffs.store import ObjectReader
from git_theta.dtypes import itemsize
from git_theta.metadata import CheckpointMetadata, TensorEntry


@dataclass(frozen=True)
class Stored:
    """Where the bytes of a tensor stored in objects come from."""

    reader: ObjectReader
    path: str
    entry: TensorEntry


@dataclass(frozen=True)
class Item:
    """One tensor of one side: its layout, its hash when known, and how to get its exact bytes."""

    name: str
    layout: Layout
    hash: str | None
    load: Callable[[], memoryview]
    #: For a tensor that changed when it was committed: the hash of its previous value, and how to read it.
    previous_hash: str | None = None
    load_previous: Callable[[], memoryview] | None = None
    #: For a tensor whose bytes encode other values (GGUF's quantized blocks): the encoding, and how to decode it.
    encoding: str | None = None
    decode: Callable[[memoryview], Decoded | None] | None = None
    #: How to stream the exact bytes block by block (checked as they stream), when that is cheaper than ``load``.
    stream: Callable[[], Iterable[memoryview]] | None = None
    stream_previous: Callable[[], Iterable[memoryview]] | None = None
    stored: Stored | None = None

    def blocks(self) -> Iterable[memoryview]:
        """The tensor's bytes in blocks, each used before the next is taken (a whole tensor is one block)."""
        return self.stream() if self.stream is not None else [self.load()]

    def previous_blocks(self) -> Iterable[memoryview]:
        """The bytes of the previous value in blocks, as ``blocks`` (only when ``load_previous`` is set)."""
        if self.stream_previous is not None:
            return self.stream_previous()
        assert self.load_previous is not None, "previous_blocks of an item without a previous value"
        return [self.load_previous()]

    def digest(self) -> str:
        """The tensor hash, computed from the bytes when the side did not record it."""
        return self.hash or "sha256:" + hashlib.sha256(self.load()).hexdigest()

    def values(self, data: memoryview) -> Decoded | None:
        """What ``data`` (this tensor's bytes, or its previous value's) stands for: the bytes themselves, or the
        decoded values of an encoded tensor (None when they cannot be decoded here)."""
        if self.decode is None:
            return Decoded(self.layout.dtype, self.layout.shape, data)
        return self.decode(data)

    def shown(self, values: Decoded | None) -> Layout:
        """The layout to report: an encoded tensor's encoding and the shape of its values, when decoded."""
        if values is None or self.encoding is None:
            return self.layout
        return Layout(self.encoding, values.shape)


def side_by_side(old: Item, new: Item) -> Iterable[tuple[memoryview, memoryview]]:
    """The bytes of two versions of a tensor as pieces holding the same elements: decoded from their shared keyframe
    once when both are stored against one, else streamed one beside the other."""
    from git_theta.diffs.numeric import aligned

    if old.stored is not None and new.stored is not None and old.stored.reader is new.stored.reader:
        pairs = new.stored.reader.pair_blocks(new.stored.path, new.name, old.stored.entry, new.stored.entry)
        if pairs is not None:
            return pairs
    return aligned(old.blocks(), new.blocks(), itemsize(old.layout.dtype), itemsize(new.layout.dtype))


def since_previous(item: Item) -> Iterable[tuple[memoryview, memoryview]]:
    """The bytes of an item's previous value and its own, side by side, as ``side_by_side`` gives them."""
    from git_theta.diffs.numeric import aligned

    previous = item.stored.entry.previous_entry() if item.stored is not None else None
    if item.stored is not None and previous is not None:
        pairs = item.stored.reader.pair_blocks(item.stored.path, item.name, previous, item.stored.entry)
        if pairs is not None:
            return pairs
    size = itemsize(item.layout.dtype)
    return aligned(item.previous_blocks(), item.blocks(), size, size)


def compare_values(old: Decoded | None, new: Decoded | None) -> Change | None:
    """Element-wise statistics of two tensors' values; None when they cannot be compared element by element."""
    from git_theta.diffs.numeric import comparable, compare

    if old is None or new is None or old.shape != new.shape or not comparable(old.dtype, new.dtype):
        return None
    return compare(old.data, new.data, old.dtype, new.dtype)


def encoded_fields(
    plugin: type[Checkpoint] | None, encodings: dict[str, str], name: str, shape: tuple[int, ...]
) -> dict[str, Any]:
    """The Item fields of a tensor its format stores encoded; none for the others."""
    encoding = encodings.get(name)
    if plugin is None or encoding is None:
        return {}
    return {"encoding": encoding, "decode": partial(plugin.decode, encoding, shape=shape)}


@dataclass
class Side:
    """The tensors of one side of a comparison; ``streamed`` sides hold bytes and can be iterated only once."""

    items: Iterable[Item]
    checkpoint_type: str | None = None
    streamed: bool = False

    @classmethod
    def absent(cls) -> Side:
        """A side where the checkpoint does not exist."""
        return cls([])

    @classmethod
    def stored(cls, metadata: CheckpointMetadata, reader: ObjectReader, path: str) -> Side:
        """A side described by metadata, its tensors decoded from objects only when needed."""
        plugin = _plugin(metadata.checkpoint_type)
        encodings = plugin.encodings(metadata.format) if plugin else {}
        return cls(
            [
                _stored_item(name, entry, reader, path, encoded_fields(plugin, encodings, name, entry.shape))
                for name, entry in metadata.tensors.items()
            ],
            metadata.checkpoint_type,
        )

    @classmethod
    def read(
        cls, tensors: Iterable[Tensor], plugin: type[Checkpoint] | None = None, encodings: dict[str, str] | None = None
    ) -> Side:
        """A side read from a checkpoint file, hashed as it streams by.

        ``encodings`` may be filled while the file is read, before its first tensor (a format knows them then).
        """
        known = encodings if encodings is not None else {}
        return cls(
            (
                Item(
                    t.spec.name,
                    Layout(t.spec.dtype, t.spec.shape),
                    None,
                    _constant(memoryview(t.data).cast("B")),
                    **encoded_fields(plugin, known, t.spec.name, t.spec.shape),
                )
                for t in tensors
            ),
            plugin.name if plugin else None,
            streamed=True,
        )


def _plugin(checkpoint_type: str) -> type[Checkpoint] | None:
    from git_theta.checkpoints.detect import load
    from git_theta.errors import GitThetaError

    try:
        return load(checkpoint_type)
    except GitThetaError:
        return None  # a format whose plugin is not installed: its tensors are compared as bytes


def _stored_item(name: str, entry: TensorEntry, reader: ObjectReader, path: str, encoded: dict) -> Item:
    item = Item(
        name,
        Layout(entry.dtype, entry.shape),
        entry.hash,
        partial(reader.load, path, name, entry),
        stream=partial(reader.blocks, path, name, entry),
        stored=Stored(reader, path, entry),
        **encoded,
    )
    previous = entry.previous_entry()
    if previous is None:
        return item
    return replace(
        item,
        previous_hash=previous.hash,
        load_previous=partial(reader.load, path, name, previous),
        stream_previous=partial(reader.blocks, path, name, previous),
    )


def diff_sides(path: str, old: Side, new: Side) -> CheckpointDiff:
    """Compare two sides of the checkpoint at ``path``."""
    if old.streamed and new.streamed:
        old = Side(list(old.items), old.checkpoint_type)  # two files: keep the old one's tensors in memory
    flip = old.streamed
    drive, other = (old, new) if flip else (new, old)
    others = {item.name: item for item in other.items}
    other_count = len(others)
    result = CheckpointDiff(path)
    seen = 0
    pairs = ((item, others.pop(item.name, None)) for item in drive.items)
    for outcome in ordered_map(lambda pair: _pair(*pair, flip), pairs):
        seen += 1
        if outcome is None:
            result.unchanged += 1
        else:
            result.tensors.append(outcome)
    leftover = [
        TensorDiff(i.name, ADDED if flip else REMOVED, *_sides(i.layout, flip=not flip)) for i in others.values()
    ]
    result.tensors.extend(leftover)
    result.new_tensors, result.old_tensors = (other_count, seen) if flip else (seen, other_count)
    return result


def _pair(driving: Item, counterpart: Item | None, flip: bool) -> TensorDiff | None:
    """Compare one tensor with its counterpart; None when they are identical (equal hashes: nothing is decoded)."""
    if counterpart is None:
        return TensorDiff(driving.name, REMOVED if flip else ADDED, *_sides(driving.layout, flip))
    if counterpart.layout == driving.layout and counterpart.digest() == driving.digest():
        return None
    from git_theta.diffs.numeric import comparable, compare_pairs

    old, new = (driving, counterpart) if flip else (counterpart, driving)
    if old.encoding is not None or new.encoding is not None:  # compare what the bytes stand for
        old_values, new_values = old.values(old.load()), new.values(new.load())
        change = compare_values(old_values, new_values)
        return TensorDiff(old.name, MODIFIED, old.shown(old_values), new.shown(new_values), change)
    same_shape = old.layout.shape == new.layout.shape
    if not same_shape or not comparable(old.layout.dtype, new.layout.dtype):
        return TensorDiff(old.name, MODIFIED, old.layout, new.layout)
    change = compare_pairs(side_by_side(old, new), old.layout.dtype, new.layout.dtype)
    return TensorDiff(old.name, MODIFIED, old.layout, new.layout, change)


def _sides(layout: Layout, flip: bool) -> tuple[Layout | None, Layout | None]:
    return (layout, None) if flip else (None, layout)


def _constant(data: memoryview) -> Callable[[], memoryview]:
    return lambda: data
