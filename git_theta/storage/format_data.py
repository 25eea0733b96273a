"""Byte strings in a checkpoint's format data: inline when small, each stored as an object when large.

A format plugin may put ``bytes`` anywhere in its format data (GGUF keeps its whole header, vocabulary included,
which can run to megabytes). The metadata in Git stays small and readable: a byte string of at most
``INLINE_BYTES`` is written as ``{"$base64": "..."}``; a larger one is stored like a U8 tensor, compressed and
content-addressed (so an unchanged header is never stored or sent again), and written as
``{"$object": {"nbytes", "hash", "oid", "stored"}}``. The plugin gets its ``bytes`` back when the file is written.
"""

from __future__ import annotations

import hashlib
from typing import Any

from git_theta.metadata import BYTES_INLINE, BYTES_OBJECT, MetadataError, bytes_entry
from git_theta.storage.codec import decode
from git_theta.storage.encoder import Encoder
from git_theta.storage.objects import ObjectStore

INLINE_BYTES = 4096


def store_format(value: Any, store: ObjectStore, encoder: Encoder) -> Any:
    """``value`` with every byte string replaced by its JSON form, the large ones stored as objects."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = memoryview(value).cast("B")
        if len(data) <= INLINE_BYTES:
            import base64  # only for a format with byte strings (GGUF): ~1 ms of every filter start otherwise

            return {BYTES_INLINE: base64.b64encode(data).decode("ascii")}
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        oid, stored = encoder.store_dense(store, data, digest, 1)
        return {BYTES_OBJECT: {"nbytes": len(data), "hash": digest, "oid": oid, "stored": stored}}
    if isinstance(value, dict):
        return {key: store_format(item, store, encoder) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [store_format(item, store, encoder) for item in value]
    return value


def load_format(value: Any, store: ObjectStore, path: str) -> Any:
    """``value`` with every byte string back as ``bytes``, read from its object when stored as one."""
    if isinstance(value, dict):
        if set(value) == {BYTES_INLINE}:
            import base64
            import binascii

            try:
                return base64.b64decode(str(value[BYTES_INLINE]), validate=True)
            except binascii.Error as exc:
                raise MetadataError(f"{path}: invalid base64 in the format data ({exc})") from exc
        if set(value) == {BYTES_OBJECT}:
            entry = bytes_entry(value[BYTES_OBJECT])
            with store.open(entry.oid) as stream:
                return bytes(
                    decode(stream, entry.hash, entry.nbytes, entry.stored, f"{entry.oid[:12]} (format data of {path})")
                )
        return {key: load_format(item, store, path) for key, item in value.items()}
    if isinstance(value, list):
        return [load_format(item, store, path) for item in value]
    return value
