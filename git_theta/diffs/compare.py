"""Comparing two sides of a checkpoint tensor by tensor: equal hashes are skipped, only changed tensors are read."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from git_theta.checkpoints.base import Checkpoint, Decoded, Tensor
from git_theta.diffs.numeric import Change, comparable, compare
from git_theta.diffs.parallel import ordered_map
from git_theta.diffs.result import ADDED, MODIFIED, REMOVED, CheckpointDiff, Layout, TensorDiff
from git_theta.diffs.store import ObjectReader
from git_theta.metadata import CheckpointMetadata, TensorEntry


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


def compare_values(old: Decoded | None, new: Decoded | None) -> Change | None:
    """Element-wise statistics of two tensors' values; None when they cannot be compared element by element."""
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
    item = Item(name, Layout(entry.dtype, entry.shape), entry.hash, partial(reader.load, path, name, entry), **encoded)
    previous = entry.previous_entry()
    if previous is None:
        return item
    return replace(item, previous_hash=previous.hash, load_previous=partial(reader.load, path, name, previous))


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
    old, new = (driving, counterpart) if flip else (counterpart, driving)
    if old.encoding is not None or new.encoding is not None:  # compare what the bytes stand for
        old_values, new_values = old.values(old.load()), new.values(new.load())
        change = compare_values(old_values, new_values)
        return TensorDiff(old.name, MODIFIED, old.shown(old_values), new.shown(new_values), change)
    same_shape = old.layout.shape == new.layout.shape
    if not same_shape or not comparable(old.layout.dtype, new.layout.dtype):
        return TensorDiff(old.name, MODIFIED, old.layout, new.layout)
    change = compare(old.load(), new.load(), old.layout.dtype, new.layout.dtype)
    return TensorDiff(old.name, MODIFIED, old.layout, new.layout, change)


def _sides(layout: Layout, flip: bool) -> tuple[Layout | None, Layout | None]:
    return (layout, None) if flip else (None, layout)


def _constant(data: memoryview) -> Callable[[], memoryview]:
    return lambda: data
