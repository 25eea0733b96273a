"""Every update representation rebuilds the exact bytes; low-rank and ia3 follow their definitions."""

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
from git_theta.updates.base import Payload, UpdateError, raw_bytes
from git_theta.updates.delta import DeltaUpdate
from git_theta.updates.ia3 import Ia3Update
from git_theta.updates.low_rank import LowRankUpdate
from git_theta.updates.sparse import SparseUpdate

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


def test_low_rank_is_base_plus_scaled_product() -> None:
    rng = np.random.default_rng(2)
    base = rng.integers(-8, 8, (6, 5)).astype(np.float32)
    left, right = rng.integers(-4, 4, (6, 2)).astype(np.float32), rng.integers(-4, 4, (2, 5)).astype(np.float32)
    new = LowRankUpdate().apply(base, Payload({"R": left, "C": right}, {"scale": 0.5}))
    # Small integers: every product and sum is exact, so an ordinary matmul must agree bit for bit.
    np.testing.assert_array_equal(new, base + 0.5 * (left @ right))
    assert new.dtype == np.float32


def test_low_rank_rounds_once_from_float64() -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((4, 3)).astype(ml_dtypes.bfloat16)
    left, right = rng.standard_normal((4, 2)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)
    new = LowRankUpdate().apply(base, Payload({"R": left, "C": right}, {}))
    exact = base.astype(np.float64) + left.astype(np.float64) @ right.astype(np.float64)
    np.testing.assert_array_equal(new, exact.astype(ml_dtypes.bfloat16))


def test_low_rank_and_ia3_are_applied_a_few_rows_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked application gives the same bits as the whole-tensor formula (which holds float64 copies of it)."""
    from git_theta.updates import base as update_base

    monkeypatch.setattr(update_base, "CHUNK_BYTES", 16 * 7 * 3)  # 3 rows of 7 columns per chunk: 5 chunks
    rng = np.random.default_rng(5)
    base = rng.standard_normal((13, 7)).astype(ml_dtypes.bfloat16)
    left, right = rng.standard_normal((13, 3)).astype(np.float32), rng.standard_normal((3, 7)).astype(np.float32)
    new = LowRankUpdate().apply(base, Payload({"R": left, "C": right}, {"scale": 0.25}))
    product = sum(np.multiply.outer(left[:, r].astype(np.float64), right[r].astype(np.float64)) for r in range(3))
    np.testing.assert_array_equal(new, (base.astype(np.float64) + product * 0.25).astype(ml_dtypes.bfloat16))
    for scale in (rng.standard_normal((13, 1)), rng.standard_normal((1, 7))):
        scaled = Ia3Update().apply(base, Payload({"ia3": scale.astype(np.float32)}, {}))
        exact = base.astype(np.float64) * scale.astype(np.float32).astype(np.float64)
        np.testing.assert_array_equal(scaled, exact.astype(ml_dtypes.bfloat16))
    assert len(update_base.row_chunks(base.shape)) == 5


def test_low_rank_refuses_factors_that_do_not_fit() -> None:
    with pytest.raises(UpdateError, match="do not fit"):
        LowRankUpdate().apply(np.zeros((3, 3), np.float32), Payload({"R": np.zeros((3, 1)), "C": np.zeros((1, 4))}, {}))


def test_ia3_scales_rows_or_columns_and_is_inferred_exactly() -> None:
    rng = np.random.default_rng(4)
    base = rng.standard_normal((5, 4)).astype(np.float32)
    rows = rng.standard_normal((5, 1)).astype(np.float32)
    new = Ia3Update().apply(base, Payload({"ia3": rows}, {}))
    np.testing.assert_array_equal(new, base * rows)
    inferred = Ia3Update().infer(base, new)
    assert inferred is not None
    np.testing.assert_array_equal(Ia3Update().apply(base, inferred), new)
    assert Ia3Update().infer(base, base + 1) is None


def test_sparse_add_mode_and_bad_indices() -> None:
    base = np.arange(6, dtype=np.float32)
    payload = Payload({"indices": np.array([1, 4]), "values": np.array([0.5, -1], np.float32)}, {"mode": "add"})
    np.testing.assert_array_equal(SparseUpdate().apply(base, payload), [0, 1.5, 2, 3, 3, 5])
    with pytest.raises(UpdateError, match="out of range"):
        SparseUpdate().apply(base, Payload({"indices": np.array([7]), "values": np.ones(1, np.float32)}, {}))


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
