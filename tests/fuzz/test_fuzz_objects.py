"""Mutation fuzzing of stored objects: whatever happens to an object's bytes, a read gives the exact tensor or fails.

Every way a tensor is read is tried (whole, as diffs and merges read it; streamed block by block, as a checkout
writes it), on every kind of object (compressed in several blocks by each codec, raw, a delta from a keyframe, a
sparse update).
Each damaged object must give exactly the committed tensor or one ObjectError line naming the object, within bounded
memory. ``GIT_THETA_FUZZ=long`` runs many more examples.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from git_theta.checkpoints.base import Tensor, TensorSpec
from git_theta.metadata import TensorEntry
from git_theta.representations.cheapest import store_tensor
from git_theta.representations.read import read_tensor
from git_theta.representations.stream import stream_tensors
from git_theta.session.context import Session
from git_theta.storage import codec
from git_theta.storage.codec import MemorySink
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import MemoryObjectStore
from tests.fuzz.conftest import PROFILE

#: The suite's profile (tests/fuzz/conftest.py), with fewer examples by default: each reads a tensor twice.
FUZZ = settings(settings.get_profile(PROFILE), max_examples=max(60, settings.get_profile(PROFILE).max_examples // 8))
LABEL = "fuzzed (tensor 'w' of m.safetensors)"


def _objects() -> dict[str, tuple[MemoryObjectStore, TensorEntry, bytes]]:
    """One store per kind of object, with the entry of the tensor to read and its exact bytes."""
    rng = np.random.default_rng(0)
    kinds = {}
    smooth = (1 + rng.standard_normal(3 << 17) * 1e-3).astype(np.float32)  # 1.5 MiB: two frames
    noise = rng.integers(0, 256, 700, dtype=np.uint8)  # incompressible: stored raw
    for kind, first, second in [
        ("streams", smooth, None),
        ("raw", noise, None),
        ("delta", smooth, smooth + rng.standard_normal(smooth.shape).astype(np.float32) * np.float32(1e-4)),
        ("sparse", smooth, _with_few_changed(smooth)),
    ]:
        store = MemoryObjectStore()
        context = Session(store)
        spec = TensorSpec("w", "F32" if first.dtype == np.float32 else "U8", first.shape)
        _, entry = store_tensor(context, Tensor(spec, memoryview(first.tobytes())))
        value = first
        if second is not None:
            context.previous["w"] = entry
            _, entry = store_tensor(context, Tensor(spec, memoryview(second.tobytes())))
            value = second
        context.close()
        assert kind == "streams" or kind == "raw" or entry.update == kind, (kind, entry.update)
        kinds[kind] = (store, entry, value.tobytes())
    kinds["zstd"] = _legacy_object(smooth)
    return kinds


def _legacy_object(value: np.ndarray) -> tuple[MemoryObjectStore, TensorEntry, bytes]:
    """A tensor in an object of the ``zstd`` codec, as git-theta wrote them up to 0.3."""
    raw = value.tobytes()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    sink = MemorySink()
    assert codec.encode(memoryview(raw), digest, value.itemsize, sink, codec="zstd") == "zstd"
    store = MemoryObjectStore()
    oid, stored = store.put(sink.getvalue())
    return store, TensorEntry("F32", value.shape, len(raw), digest, oid, stored), raw


def _with_few_changed(value: np.ndarray) -> np.ndarray:
    changed = value.copy()
    changed[::997] += 1
    return changed


OBJECTS = _objects()


def read_both_ways(store: MemoryObjectStore, entry: TensorEntry) -> list[bytes]:
    """The tensor as ``read_tensor`` gives it, and as a checkout streams it."""
    whole = bytes(read_tensor(store, entry, LABEL))
    streamed = b"".join(bytes(block) for blocks in stream_tensors(store, [(LABEL, entry)], None) for block in blocks)
    return [whole, streamed]


def assert_exact_or_refused(store: MemoryObjectStore, entry: TensorEntry, expected: bytes) -> None:
    tracemalloc.start()
    try:
        results = read_both_ways(store, entry)
    except ObjectError as exc:
        message = str(exc)
        assert "\n" not in message and (LABEL in message or entry.oid[:12] in message), message
        return
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 4 * len(expected) + (16 << 20), peak
    assert all(result == expected for result in results)


def damaged(store: MemoryObjectStore, oid: str, data: bytes) -> MemoryObjectStore:
    """A copy of ``store`` whose object ``oid`` now holds ``data`` (a disk that changed it under its name)."""
    copy = MemoryObjectStore()
    copy.objects = {**store.objects, oid: data}
    return copy


def objects_of(entry: TensorEntry) -> list[str]:
    return [entry.oid, *(link.oid for link in entry.base)]


@pytest.mark.parametrize("kind", list(OBJECTS))
@FUZZ
@given(data=st.data())
def test_mutated_bytes_give_the_exact_tensor_or_one_line(kind: str, data: st.DataObject) -> None:
    store, entry, expected = OBJECTS[kind]
    oid = data.draw(st.sampled_from(objects_of(entry)))
    obj = bytearray(store.objects[oid])
    header_end = 12 + struct.unpack("<I", obj[8:12])[0]
    # Half the mutations land in the prefix and header, where one byte says how to read all the others.
    near = st.integers(0, header_end - 1)
    positions = data.draw(st.lists(st.one_of(near, st.integers(0, len(obj) - 1)), min_size=1, max_size=4))
    for position in positions:
        obj[position] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(obj)))
        obj = obj[:cut] + data.draw(st.binary(max_size=64))
    assert_exact_or_refused(damaged(store, oid, bytes(obj)), entry, expected)


VALUES = [0, 1, 2, 3, 8, -1, 2**31, 2**62, 1.5, "4", None, True, [], {}]


@pytest.mark.parametrize("kind", list(OBJECTS))
def test_every_header_field_changed_gives_the_exact_tensor_or_one_line(kind: str) -> None:
    store, entry, expected = OBJECTS[kind]
    for oid in objects_of(entry):
        obj = store.objects[oid]
        header_end = 12 + struct.unpack("<I", obj[8:12])[0]
        header = json.loads(obj[12:header_end])
        for field in _fields(header):
            for value in VALUES:
                changed = _replaced(header, field, value)
                body = json.dumps(changed, sort_keys=True, separators=(",", ":")).encode()
                mutated = obj[:8] + struct.pack("<I", len(body)) + body + obj[header_end:]
                assert_exact_or_refused(damaged(store, oid, mutated), entry, expected)


def _fields(header: dict, prefix: tuple = ()) -> list[tuple]:
    found = []
    for key, value in header.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found.extend(_fields(value, (*prefix, key)))
    return found


def _replaced(header: dict, field: tuple, value: object) -> dict:
    copy = json.loads(json.dumps(header))
    target = copy
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    return copy


@pytest.mark.parametrize("kind", list(OBJECTS))
def test_a_missing_object_is_one_line(kind: str) -> None:
    store, entry, _ = OBJECTS[kind]
    for oid in objects_of(entry):
        copy = MemoryObjectStore()
        copy.objects = {key: value for key, value in store.objects.items() if key != oid}
        with pytest.raises(ObjectError) as excinfo:
            read_both_ways(copy, entry)
        assert "\n" not in str(excinfo.value) and oid[:12] in str(excinfo.value)


def test_the_objects_are_what_they_claim() -> None:
    for store, entry, expected in OBJECTS.values():
        assert entry.hash == "sha256:" + hashlib.sha256(expected).hexdigest()
        assert read_both_ways(store, entry) == [expected, expected]
