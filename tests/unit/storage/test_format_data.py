"""Byte strings in format data: inline base64 when small, an object each when large, given back as bytes."""

from __future__ import annotations

import hashlib
import os

import pytest

from git_theta.metadata import CheckpointMetadata, MetadataError, TensorEntry
from git_theta.storage.encoder import Encoder
from git_theta.storage.errors import ObjectError
from git_theta.storage.format_data import INLINE_BYTES, load_format, store_format
from tests.unit.support import MemoryObjectStore


def test_small_byte_strings_are_inline_and_large_ones_objects() -> None:
    store = MemoryObjectStore()
    large = os.urandom(INLINE_BYTES + 1)
    value = {"header": large, "gaps": [3, b"\x01\x02"], "name": "tiny", "nested": {"blob": b""}}
    stored = store_format(value, store, Encoder())

    assert stored["gaps"] == [3, {"$base64": "AQI="}] and stored["nested"] == {"blob": {"$base64": ""}}
    reference = stored["header"]["$object"]
    assert reference["nbytes"] == len(large) and reference["hash"] == "sha256:" + hashlib.sha256(large).hexdigest()
    assert store.has(reference["oid"]) and stored["name"] == "tiny"
    assert load_format(stored, store, "m.gguf") == value

    # The metadata names the object, so push, fetch, gc and fsck see it; an unchanged header is the same object.
    entry = TensorEntry("U8", (4,), 4, "sha256:" + "0" * 64, "1" * 64, 100)
    metadata = CheckpointMetadata("gguf", {"w": entry}, stored)
    objects = CheckpointMetadata.loads(metadata.dumps()).objects()
    assert objects == {"1" * 64: 100, reference["oid"]: reference["stored"]}
    assert store_format(value, store, Encoder()) == stored


def test_a_missing_or_damaged_reference_fails_clearly() -> None:
    store = MemoryObjectStore()
    stored = store_format({"header": os.urandom(INLINE_BYTES * 2)}, store, Encoder())
    with pytest.raises(ObjectError, match="is missing"):
        load_format(stored, MemoryObjectStore(), "m.gguf")
    with pytest.raises(MetadataError, match="invalid reference"):
        load_format({"header": {"$object": {"oid": "x"}}}, store, "m.gguf")
    with pytest.raises(MetadataError, match="invalid base64"):
        load_format({"header": {"$base64": "not base64!"}}, store, "m.gguf")
