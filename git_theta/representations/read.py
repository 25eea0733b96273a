"""Tensors read from the object store: the one place that turns a metadata entry into exact bytes.

A dense tensor is one object. A tensor stored as an update is rebuilt from its base chain: the base is read
(recursively), the update applied, and the result checked against the tensor's SHA-256 before it is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from git_theta.dtypes import bits_dtype
from git_theta.metadata import DENSE, TensorEntry
from git_theta.pipeline import Tasks, ordered_map
from git_theta.storage.bytegroup import tensor_buffer
from git_theta.storage.codec import PARALLEL_FRAMES, Block, ObjectReader, decode, read_payload
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import ObjectStore
from git_theta.storage.packs import open_reader, open_stored


def tensor_label(path: str, name: str, entry: TensorEntry) -> str:
    """How errors name a tensor's object."""
    return f"{entry.oid[:12]} (tensor {name!r} of {path})"


def read_tensor(
    store: ObjectStore, entry: TensorEntry, label: str, executor: Tasks | None = None, *, check: bool = True
) -> memoryview:
    """Return the exact bytes of the tensor ``entry`` describes, checked against its hash.

    The values under an update are not hashed on their own (``check=False``): checking the final tensor's hash
    checks them all.
    """
    if entry.update == DENSE:
        stream, size = open_stored(store, entry, label)
        with stream:
            return decode(stream, entry.hash, entry.nbytes, size, label, executor=executor)
    if entry.update == "delta" and len(entry.base) == 1:  # a delta from a keyframe: rebuilt block by block, in place
        return _read_delta_blocks(store, entry, label, executor)
    base_entry = entry.base_entry()
    base = read_tensor(store, base_entry, f"{base_entry.oid[:12]} (base of {label})", executor, check=False)
    with open_update(store, entry, label) as reader:
        payload = read_payload(reader, executor=executor)
    assert reader.update is not None  # open_update checked it
    rebuilt = apply_update(entry, reader.update, reader.parts(), base, payload, label)
    if check and "sha256:" + hashlib.sha256(rebuilt).hexdigest() != entry.hash:
        raise ObjectError(
            f"tensor {label}: applying its {entry.update} update did not give the committed tensor "
            "(its hash differs); the object or its base is corrupt, check with git theta fsck"
        )
    return rebuilt


def _read_delta_blocks(store: ObjectStore, entry: TensorEntry, label: str, executor: Tasks | None) -> memoryview:
    """A tensor stored as a delta from its keyframe, assembled block by block and hashed as it goes: memory holds
    the tensor and a few blocks, not the keyframe, the delta and the sum as well."""
    pair = DeltaBlocks(store, entry, label)
    out, at, digest = tensor_buffer(entry.nbytes), 0, hashlib.sha256()
    try:
        if executor is None:
            blocks: Iterator[memoryview] = map(pair.read_block, pair.blocks)
        else:
            blocks = ordered_map(executor, pair.read_block, pair.blocks, PARALLEL_FRAMES)
        for block in blocks:
            out[at : at + len(block)] = block
            digest.update(block)
            at += len(block)
    finally:
        pair.close()
    pair.check_hash(digest)
    return memoryview(out)


def open_update(store: ObjectStore, entry: TensorEntry, label: str) -> ObjectReader:
    """Open the object of a tensor stored as an update, checking it is the update of the base the metadata names."""
    reader = open_reader(store, entry, label)
    update = reader.update
    if update is None or update["type"] != entry.update or update["base"] != entry.base[0].hash:
        reader.close()
        raise ObjectError(f"object {label} is not the {entry.update} update the metadata describes")
    return reader


def apply_update(
    entry: TensorEntry, update: dict[str, Any], parts: list[tuple], base: memoryview, payload: memoryview, label: str
) -> memoryview:
    """Apply an update object's payload to the base tensor's bytes; return the new tensor's bytes (``label`` names
    the object and the tensor in errors)."""
    from git_theta import plugins
    from git_theta.updates.base import Payload, UpdateError, as_array, raw_bytes

    plugin, params = plugins.load(plugins.UPDATES, entry.update)(), update.get("params", {})
    bits = plugin.on_bit_patterns(params)
    arrays, offset = {}, 0
    for name, dtype, shape, size, _ in parts:
        arrays[name] = as_array(payload[offset : offset + size], dtype, shape, bits)
        offset += size
    try:
        new = plugin.apply(as_array(base, entry.dtype, entry.shape, bits), Payload(arrays, params))
    except (UpdateError, KeyError, ValueError, TypeError) as exc:
        raise ObjectError(f"object {label}: its {entry.update} update cannot be applied ({exc})") from exc
    if new.shape != entry.shape or new.nbytes != entry.nbytes:
        raise ObjectError(f"object {label}: its {entry.update} update gave a tensor of the wrong shape")
    return raw_bytes(new)


class DeltaBlocks:
    """A tensor stored as a delta from a keyframe: each block is the keyframe's block plus the delta's, decoded as
    one task, so a fine-tuned version streams on every core like a dense one. The result is hashed as it goes."""

    def __init__(self, store: ObjectStore, entry: TensorEntry, label: str) -> None:
        keyframe = entry.base_entry()
        self.label, self.hash = label, entry.hash
        self.bits = bits_dtype(entry.dtype)
        self.keyframe = open_reader(store, keyframe, f"{keyframe.oid[:12]} (base of {label})")
        self.delta = open_update(store, entry, label)
        if len(self.delta.parts()) != 1:
            raise ObjectError(f"object {label} is not the delta update the metadata describes")
        layout = [(start, length) for _, _, start, length, _ in self.keyframe.blocks]
        if layout != [(start, length) for _, _, start, length, _ in self.delta.blocks]:
            raise ObjectError(f"object {label} does not line up with its base")
        self.blocks = list(zip(self.keyframe.blocks, self.delta.blocks, strict=True))

    def read_block(self, blocks: tuple[Block, Block]) -> memoryview:
        """Decode one block of the keyframe and the delta's block at the same place; return their sum."""
        import numpy as np

        from git_theta.updates.delta import add_zigzag_difference

        base, delta = self.keyframe.read_block(blocks[0]), self.delta.read_block(blocks[1])
        zigzag = np.frombuffer(delta, self.bits)
        new = add_zigzag_difference(np.frombuffer(base, self.bits), zigzag, zigzag if zigzag.flags.writeable else None)
        return new.view(np.uint8).data

    def check_hash(self, digest: hashlib._Hash) -> None:
        """Compare the SHA-256 of the rebuilt tensor with the tensor's hash."""
        if "sha256:" + digest.hexdigest() != self.hash:
            raise ObjectError(f"tensor {self.label}: its delta and base do not give the committed tensor")

    def close(self) -> None:
        """Close both objects."""
        self.keyframe.close()
        self.delta.close()
