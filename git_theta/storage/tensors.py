"""Tensors to and from the object store: the one place that turns a metadata entry into exact bytes and back.

A dense tensor is one object. A tensor stored as an update is rebuilt from its base chain: the base is read
(recursively), the update applied, and the result checked against the tensor's SHA-256 before it is used.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Executor
from typing import Any

from git_theta.metadata import DENSE, TensorEntry
from git_theta.storage.codec import MemorySink, ObjectReader, decode, encode, encode_update, read_payload
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import ObjectStore

#: Objects up to this size are encoded in memory and written once: cheap for thousands of tiny tensors.
SMALL_OBJECT = 1 << 20


def tensor_label(path: str, name: str, entry: TensorEntry) -> str:
    """How errors name a tensor's object."""
    return f"{entry.oid[:12]} (tensor {name!r} of {path})"


def read_tensor(
    store: ObjectStore, entry: TensorEntry, label: str, executor: Executor | None = None, *, check: bool = True
) -> memoryview:
    """Return the exact bytes of the tensor ``entry`` describes, checked against its hash.

    The values under an update are not hashed on their own (``check=False``): checking the final tensor's hash
    checks them all.
    """
    if entry.update == DENSE:
        with store.open(entry.oid) as stream:
            return decode(stream, entry.hash, entry.nbytes, entry.stored, label, executor=executor)
    if entry.update == "delta" and len(entry.base) == 1:  # a delta from a keyframe: rebuilt block by block, in place
        return _read_delta_blocks(store, entry, label, executor)
    base_entry = entry.base_entry()
    base = read_tensor(store, base_entry, f"{base_entry.oid[:12]} (base of {label})", executor, check=False)
    with open_update(store, entry, label) as reader:
        payload = read_payload(reader, executor=executor)
    rebuilt = apply_update(entry, reader.update, reader.parts(), base, payload)
    if check and "sha256:" + hashlib.sha256(rebuilt).hexdigest() != entry.hash:
        raise ObjectError(
            f"tensor {label}: applying its {entry.update} update did not give the committed tensor "
            "(its hash differs); the object or its base is corrupt, check with git theta fsck"
        )
    return rebuilt


def _read_delta_blocks(store: ObjectStore, entry: TensorEntry, label: str, executor: Executor | None) -> memoryview:
    """A tensor stored as a delta from its keyframe, assembled from the streamed blocks (hashed as they stream):
    memory holds the tensor and a few blocks, not the keyframe, the delta and the sum as well."""
    from git_theta.storage.streaming import stream_tensors

    out, at = bytearray(entry.nbytes), 0
    for blocks in stream_tensors(store, [(label, entry)], executor):
        for block in blocks:
            out[at : at + len(block)] = block
            at += len(block)
    return memoryview(out)


def open_update(store: ObjectStore, entry: TensorEntry, label: str) -> ObjectReader:
    """Open the object of a tensor stored as an update, checking it is the update of the base the metadata names."""
    reader = ObjectReader(store.open(entry.oid), entry.hash, entry.nbytes, entry.stored, label)
    update = reader.update
    if update is None or update["type"] != entry.update or update["base"] != entry.base[0].hash:
        reader.close()
        raise ObjectError(f"object {label} is not the {entry.update} update the metadata describes")
    return reader


def apply_update(
    entry: TensorEntry, update: dict[str, Any], parts: list[tuple], base: memoryview, payload: memoryview
) -> memoryview:
    """Apply an update object's payload to the base tensor's bytes; return the new tensor's bytes."""
    from git_theta import plugins
    from git_theta.updates.base import Payload, UpdateError, as_array, raw_bytes

    arrays, offset = {}, 0
    for name, dtype, shape, size, _ in parts:
        arrays[name] = as_array(payload[offset : offset + size], dtype, shape)
        offset += size
    plugin = plugins.load(plugins.UPDATES, entry.update)
    try:
        new = plugin().apply(as_array(base, entry.dtype, entry.shape), Payload(arrays, update.get("params", {})))
    except (UpdateError, KeyError, ValueError, TypeError) as exc:
        raise ObjectError(f"the {entry.update} update of a tensor cannot be applied ({exc})") from exc
    if new.shape != entry.shape or new.nbytes != entry.nbytes:
        raise ObjectError(f"the {entry.update} update gave a tensor of the wrong shape")
    return raw_bytes(new)


def store_dense(
    store: ObjectStore, data: memoryview, digest: str, group: int, level: int, executor: Executor | None
) -> tuple[str, int]:
    """Store a tensor whole; return ``(oid, stored size)``."""
    return _store(store, len(data), lambda sink: encode(data, digest, group, sink, level, executor))


def store_update(
    store: ObjectStore,
    parts: list[tuple[str, str, tuple[int, ...], memoryview]],
    digest: str,
    update: dict[str, Any],
    level: int,
    executor: Executor | None,
) -> tuple[str, int]:
    """Store an update object (see ``codec.encode_update``); return ``(oid, stored size)``."""
    size = sum(len(data) for *_, data in parts)
    return _store(store, size, lambda sink: encode_update(parts, digest, update, sink, level, executor))


def encode_in_memory(write: Any) -> bytes:
    """The object ``write(sink)`` produces, without storing it."""
    sink = MemorySink()
    write(sink)
    return sink.getvalue()


def _store(store: ObjectStore, size: int, write: Any) -> tuple[str, int]:
    if size <= SMALL_OBJECT:
        sink = MemorySink()
        write(sink)
        return store.put(sink.getvalue())
    writer = store.writer()
    try:
        write(writer)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise
