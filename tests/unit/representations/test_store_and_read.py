"""Tensors stored and read back in every representation: exact bytes, keyframes, streamed deltas, bounded memory."""

from __future__ import annotations

import hashlib

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from git_theta.checkpoints.base import Tensor, TensorSpec
from git_theta.metadata import TensorEntry
from git_theta.representations.cheapest import store_tensor, update_header, update_parts
from git_theta.representations.read import read_tensor
from git_theta.session.context import Session
from git_theta.storage.encoder import Encoder
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import MemoryObjectStore
from git_theta.updates.base import Payload, raw_bytes
from git_theta.updates.delta import DeltaUpdate

DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "F64": np.float64,
    "I64": np.int64,
    "U8": np.uint8,
    "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "C64": np.complex64,
}


def digest(data: bytes | memoryview) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def store_as(store: MemoryObjectStore, name: str, payload: Payload, base: TensorEntry, new: np.ndarray) -> TensorEntry:
    data = raw_bytes(new)
    oid, stored = Encoder().store_update(
        store, update_parts(payload), digest(data), update_header(name, base, payload.params)
    )
    dtype = base.dtype
    return TensorEntry(dtype, new.shape, len(data), digest(data), oid, stored, name, (base.link, *base.base))


def dense_entry(store: MemoryObjectStore, dtype: str, array: np.ndarray) -> TensorEntry:
    data = raw_bytes(array)
    oid, stored = Encoder().store_dense(store, data, digest(data), array.dtype.itemsize)
    return TensorEntry(dtype, array.shape, len(data), digest(data), oid, stored)


@st.composite
def tensor_pairs(draw: st.DrawFn) -> tuple[str, np.ndarray, np.ndarray]:
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 9), min_size=1, max_size=3)))
    size = int(np.prod(shape)) * np.dtype(DTYPES[dtype]).itemsize
    old = np.frombuffer(draw(st.binary(min_size=size, max_size=size)), dtype=DTYPES[dtype]).reshape(shape)
    flips = draw(st.lists(st.integers(0, max(0, size - 1)), max_size=8)) if size else []
    new_bytes = bytearray(raw_bytes(old))
    for at in flips:
        new_bytes[at] ^= draw(st.integers(1, 255))
    return dtype, old, np.frombuffer(bytes(new_bytes), dtype=DTYPES[dtype]).reshape(shape)


@settings(max_examples=150, deadline=None)
@given(tensor_pairs(), st.sampled_from(["delta", "sparse", "dense"]))
def test_every_inferred_representation_rebuilds_the_exact_bytes(pair, kind: str) -> None:
    from git_theta import plugins

    dtype, old, new = pair
    store = MemoryObjectStore()
    base = dense_entry(store, dtype, old)
    payload = plugins.load(plugins.UPDATES, kind)().infer(old, new)
    entry = store_as(store, kind, payload, base, new)
    assert bytes(read_tensor(store, entry, "t")) == bytes(raw_bytes(new))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(min_size=64, max_size=64), min_size=2, max_size=6))
def test_a_chain_of_deltas_rebuilds_every_version(versions: list[bytes]) -> None:
    store = MemoryObjectStore()
    arrays = [np.frombuffer(v, dtype=np.float32) for v in versions]
    entry = dense_entry(store, "F32", arrays[0])
    for array in arrays[1:]:
        entry = store_as(
            store,
            "delta",
            DeltaUpdate().infer(np.frombuffer(bytes(read_tensor(store, entry, "t")), np.float32), array),
            entry,
            array,
        )
        assert bytes(read_tensor(store, entry, "t")) == bytes(array.tobytes())
    assert len(entry.base) == len(arrays) - 1


def test_clean_stores_each_version_against_the_keyframe() -> None:
    rng = np.random.default_rng(0)
    store = MemoryObjectStore()
    context = Session(store, max_delta_depth=2)
    value = rng.standard_normal((256, 256)).astype(np.float32)
    spec = TensorSpec("w", "F32", value.shape)
    entries = []
    for step in range(5):
        if step:
            value = value + rng.standard_normal(value.shape).astype(np.float32) * 1e-3
        _, entry = store_tensor(context, Tensor(spec, raw_bytes(value)))
        context.previous["w"] = entry
        entries.append(entry)
        assert bytes(read_tensor(store, entry, "w")) == value.tobytes()
    # Every version is one delta away from the first: rebuilding version 4 costs what version 1 does.
    assert [e.base for e in entries[1:]] == [(entries[0].link,)] * 4
    assert all(e.update == "delta" and e.stored < 0.7 * value.nbytes for e in entries[1:])
    context.close()


def test_a_one_percent_change_is_stored_in_a_few_percent() -> None:
    rng = np.random.default_rng(1)
    store = MemoryObjectStore()
    context = Session(store)
    value = rng.standard_normal((512, 512)).astype(np.float32)
    spec = TensorSpec("w", "F32", value.shape)
    _, context.previous["w"] = store_tensor(context, Tensor(spec, raw_bytes(value)))
    changed = value.copy().reshape(-1)
    positions = rng.choice(changed.size, changed.size // 100, replace=False)
    changed[positions] = rng.standard_normal(len(positions)).astype(np.float32)
    _, entry = store_tensor(context, Tensor(spec, raw_bytes(changed)))
    context.close()
    assert entry.update in ("sparse", "delta")
    assert entry.stored <= 0.08 * value.nbytes
    assert bytes(read_tensor(store, entry, "w")) == changed.tobytes()


def test_a_fine_tuned_tensor_is_not_encoded_whole_but_a_pruned_or_rewritten_one_is(monkeypatch) -> None:
    """Up to 4 MiB: an update far smaller than its keyframe's object is kept without encoding the tensor whole too,
    unless many elements became zero; otherwise both are encoded and the smaller kept."""
    rng = np.random.default_rng(3)
    store = MemoryObjectStore()
    context = Session(store)
    value = (rng.standard_normal((512, 384)) * 0.02).astype(np.float32)
    spec = TensorSpec("w", "F32", value.shape)
    _, first = store_tensor(context, Tensor(spec, raw_bytes(value)))
    context.previous["w"] = first
    encoded_whole = []
    real_write_dense = Encoder.write_dense
    monkeypatch.setattr(Encoder, "write_dense", lambda *a, **k: encoded_whole.append(1) or real_write_dense(*a, **k))

    tuned = value + (rng.standard_normal(value.shape) * 4e-5).astype(np.float32)
    pruned = np.where(np.abs(value) < np.median(np.abs(value)), np.float32(0), value)  # its delta: 0.67 of first's
    rewritten = (rng.standard_normal(value.shape) * 0.02).astype(np.float32)
    for new, update, encoded in ((tuned, "delta", []), (pruned, "dense", [1]), (rewritten, "dense", [1, 1])):
        _, entry = store_tensor(context, Tensor(spec, raw_bytes(new)))
        assert (entry.update, encoded_whole) == (update, encoded)
        assert entry.stored < (0.75 if update == "delta" else 1.01) * first.stored
        assert bytes(read_tensor(store, entry, "w")) == new.tobytes()
    context.close()


@pytest.mark.parametrize("dtype", ["F32", "BF16", "F8_E4M3", "I64", "BOOL"])
def test_a_sparse_edit_is_the_object_the_sparse_update_type_infers(dtype: str) -> None:
    # The clean filter builds a sparse update from bit patterns (no ml_dtypes): its object must be byte for byte the
    # one SparseUpdate.infer's payload gives, with the parts' dtypes named as before (BOOL values as U8).
    from git_theta.dtypes import numpy_dtype
    from git_theta.updates.sparse import SparseUpdate

    rng = np.random.default_rng(5)
    old = rng.integers(1, 120, 64 * 1024).astype(numpy_dtype(dtype))  # a BOOL tensor is read as bytes: U8
    new = old.copy()
    new[rng.choice(old.size, old.size // 100, replace=False)] = 0
    store = MemoryObjectStore()
    context = Session(store)
    spec = TensorSpec("w", dtype, old.shape)
    _, first = store_tensor(context, Tensor(spec, raw_bytes(old)))
    context.previous["w"] = first
    _, entry = store_tensor(context, Tensor(spec, raw_bytes(new)))
    context.close()
    payload = SparseUpdate().infer(old, new)
    expected = store_as(MemoryObjectStore(), "sparse", payload, first, new)
    assert (entry.update, entry.oid) == ("sparse", expected.oid)
    assert bytes(read_tensor(store, entry, "w")) == bytes(raw_bytes(new))


@pytest.mark.parametrize("dtype", ["F32", "BF16", "C64"])
def test_a_large_tensor_is_judged_on_samples_and_its_delta_streamed(dtype: str, monkeypatch) -> None:
    """Tensors over 4 MiB: a fine-tune is a delta (never held whole), a rewrite is whole, a sparse edit sparse."""
    from git_theta.representations import cheapest as represent

    opened = []
    real_open = represent._StreamedDelta.open
    monkeypatch.setattr(represent._StreamedDelta, "open", lambda *args: opened.append(1) or real_open(*args))
    rng = np.random.default_rng(7)
    store = MemoryObjectStore()
    context = Session(store)
    shape = (2560, 1027)  # 5 to 20 MiB: several 1 MiB blocks and a partial last one
    value = (rng.standard_normal(shape) * 0.02).astype(DTYPES[dtype])
    spec = TensorSpec("w", dtype, shape)
    _, first = store_tensor(context, Tensor(spec, raw_bytes(value)))
    context.previous["w"] = first

    noise = (rng.standard_normal(shape) * 4e-5).astype(np.float32)
    tuned = (value.astype(np.complex128 if dtype == "C64" else np.float32) + noise).astype(DTYPES[dtype])
    rewritten = (rng.standard_normal(shape) * 0.02).astype(DTYPES[dtype])
    sparse = value.copy().reshape(-1)
    sparse[rng.choice(sparse.size, sparse.size // 100, replace=False)] = 0
    expected = {"delta": tuned, "dense": rewritten, "sparse": sparse.reshape(shape)}
    for update, new in expected.items():
        _, entry = store_tensor(context, Tensor(spec, raw_bytes(new)))
        if dtype == "C64" and update == "sparse":
            update = "delta"  # sparse updates list whole elements; complex deltas are per component
        assert entry.update == update and bytes(read_tensor(store, entry, "w")) == raw_bytes(new).tobytes(), update
        assert entry.base == ((first.link,) if update != "dense" else ()), update
        assert entry.previous == (first.link,), update  # the previous value is the first, however it is stored
        assert entry.stored < (0.7 if update == "delta" else 0.06 if update == "sparse" else 1.0) * len(raw_bytes(new))
    context.close()
    assert len(opened) == 3  # each new version went the streamed way first


def test_reading_a_delta_holds_the_tensor_and_a_few_blocks() -> None:
    """Diffs, merges and explicit updates read whole tensors: a delta is assembled block by block, in one buffer."""
    import tracemalloc

    rng = np.random.default_rng(8)
    store = MemoryObjectStore()
    context = Session(store)
    value = rng.standard_normal((2048, 2048)).astype(np.float32)  # 16 MiB
    spec = TensorSpec("w", "F32", value.shape)
    _, context.previous["w"] = store_tensor(context, Tensor(spec, raw_bytes(value)))
    tuned = value + rng.standard_normal(value.shape).astype(np.float32) * np.float32(1e-4)
    _, entry = store_tensor(context, Tensor(spec, raw_bytes(tuned)))
    context.close()
    assert entry.update == "delta"
    tracemalloc.start()
    try:
        data = read_tensor(store, entry, "w")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert bytes(data) == tuned.tobytes()
    # The tensor and the blocks being decoded and hashed (more when the hashing thread lags on a busy machine);
    # not the keyframe, the delta and their sum besides (3x).
    assert peak < 2 * tuned.nbytes, peak


def test_a_wrong_base_is_detected() -> None:
    store = MemoryObjectStore()
    old, new = np.ones(64, np.float32), np.full(64, 2, np.float32)
    base = dense_entry(store, "F32", old)
    entry = store_as(store, "delta", DeltaUpdate().infer(old, new), base, new)
    other = dense_entry(store, "F32", np.zeros(64, np.float32))
    forged = entry._replace(base=(other.link,))
    with pytest.raises(ObjectError, match="not the delta update"):
        read_tensor(store, forged, "t")


@pytest.mark.parametrize("size", [64, 3 << 20])  # one raw block; several 1 MiB frames
def test_a_delta_streams_block_by_block_and_a_corrupt_one_fails(size: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from git_theta.representations.stream import stream_tensors

    rng = np.random.default_rng(5)
    store = MemoryObjectStore()
    old = rng.standard_normal(size // 4).astype(np.float32)
    new = old + rng.standard_normal(old.shape).astype(np.float32) * np.float32(1e-4)
    entry = store_as(store, "delta", DeltaUpdate().infer(old, new), dense_entry(store, "F32", old), new)
    with ThreadPoolExecutor(2) as pool:
        (chunks,) = list(stream_tensors(store, [("t", entry)], pool))
        assert b"".join(bytes(c) for c in chunks) == new.tobytes()
        # A delta whose sum with its base is not the tensor the metadata names (the result is hashed as it streams).
        other = digest(np.zeros_like(new).tobytes())
        header = update_header("delta", entry.base_entry(), {})
        oid, stored = Encoder().store_update(store, update_parts(DeltaUpdate().infer(old, new)), other, header)
        with pytest.raises(ObjectError, match="do not give the committed tensor"):
            for chunks in stream_tensors(store, [("t", entry._replace(hash=other, oid=oid, stored=stored))], pool):
                for _ in chunks:
                    pass
        corrupt = bytearray(store.objects[entry.oid])
        corrupt[-5] ^= 0xFF
        store.objects[entry.oid] = bytes(corrupt)
        with pytest.raises(ObjectError):
            for chunks in stream_tensors(store, [("t", entry)], pool):
                for _ in chunks:
                    pass
