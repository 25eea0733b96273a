"""The statistics of a change, checked against a direct numpy computation, and their documented conventions."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from git_theta.diffs import numeric
from git_theta.diffs.numeric import compare
from tests.unit.support import PROPERTY


def expected(old: np.ndarray, new: np.ndarray) -> dict[str, float]:
    """The statistics computed the obvious way, in float64 over whole arrays."""
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[old.dtype.itemsize]
    changed = old.view(bits) != new.view(bits)
    o, n = old.astype(np.float64), new.astype(np.float64)
    delta = np.where(changed, n - o, 0.0)
    return {
        "changed": int(changed.sum()),
        "l2": float(np.linalg.norm(delta)),
        "rel": float(np.linalg.norm(delta) / np.linalg.norm(o)),
        "cos": float(o @ n / (np.linalg.norm(o) * np.linalg.norm(n))),
    }


def check(old: np.ndarray, new: np.ndarray, dtype: str) -> None:
    change = compare(memoryview(old.tobytes()), memoryview(new.tobytes()), dtype, dtype)
    want = expected(old, new)
    assert change.changed == want["changed"]
    assert change.elements == old.size
    for key in ("l2", "rel", "cos"):
        assert getattr(change, key) == pytest.approx(want[key], rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize(
    ("dtype", "numpy_type"),
    [
        ("F64", np.float64),
        ("F32", np.float32),
        ("F16", np.float16),
        ("BF16", ml_dtypes.bfloat16),
        ("F8_E4M3", ml_dtypes.float8_e4m3fn),
        ("F8_E5M2", ml_dtypes.float8_e5m2),
    ],
)
def test_float_types_match_numpy(dtype: str, numpy_type: type) -> None:
    rng = np.random.default_rng(7)
    old = rng.standard_normal(1000).astype(numpy_type)
    new = old.copy()
    new[::7] = (rng.standard_normal(len(new[::7])) * 0.1 + new[::7].astype(np.float64)).astype(numpy_type)
    check(old, new, dtype)


def test_every_bfloat16_widens_as_ml_dtypes_widens_it() -> None:
    # bfloat16 is widened by shifting its bits into a float32's top half (no ml_dtypes import): all 65536 patterns.
    patterns = np.arange(1 << 16, dtype="<u2")
    widened = numeric.reals(memoryview(patterns.tobytes()), "BF16")
    reference = patterns.view(ml_dtypes.bfloat16).astype(np.float64)
    nan = np.isnan(reference)
    assert np.array_equal(np.isnan(widened), nan)
    assert np.array_equal(widened[~nan].view(np.uint64), reference[~nan].view(np.uint64))  # -0.0 and 0.0 apart


def test_integers_and_bool() -> None:
    old = np.arange(-50, 50, dtype=np.int32)
    new = old.copy()
    new[3] = 1000
    check(old, new, "I32")
    flags = np.array([True, False, True, True])
    change = compare(memoryview(flags.tobytes()), memoryview(np.ones(4, bool).tobytes()), "BOOL", "BOOL")
    assert change.changed == 1 and change.l2 == 1.0


def test_chunks_add_up_to_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numeric, "CHUNK", 64)
    rng = np.random.default_rng(1)
    old = rng.standard_normal(1000).astype(np.float32)
    new = old + rng.standard_normal(1000).astype(np.float32) * 0.01
    check(old, new, "F32")


def test_nan_to_the_same_nan_is_unchanged_and_signed_zero_is_a_change() -> None:
    old = np.array([np.nan, 0.0, 1.0, np.inf], dtype=np.float32)
    new = np.array([np.nan, -0.0, 1.0, np.inf], dtype=np.float32)
    change = compare(memoryview(old.tobytes()), memoryview(new.tobytes()), "F32", "F32")
    assert change.changed == 1
    assert change.l2 == 0.0  # -0.0 - 0.0 is zero, and the unchanged NaN and inf contribute nothing


def test_zero_norm_conventions() -> None:
    zeros, ones = np.zeros(4, np.float32), np.ones(4, np.float32)
    same = compare(memoryview(zeros.tobytes()), memoryview(zeros.tobytes()), "F32", "F32")
    assert (same.rel, same.cos) == (0.0, 1.0)
    grown = compare(memoryview(zeros.tobytes()), memoryview(ones.tobytes()), "F32", "F32")
    assert grown.rel == math.inf and grown.cos == 0.0 and grown.l2 == 2.0
    vanished = compare(memoryview(ones.tobytes()), memoryview(zeros.tobytes()), "F32", "F32")
    assert vanished.rel == 1.0 and vanished.cos == 0.0
    empty = compare(memoryview(b""), memoryview(b""), "F32", "F32")
    assert (empty.changed, empty.elements, empty.fraction, empty.rel, empty.cos) == (0, 0, 0.0, 0.0, 1.0)


def test_huge_float64_values_do_not_overflow() -> None:
    old = np.array([1e300, -1e300, 3e299])
    new = old * 1.5
    change = compare(memoryview(old.tobytes()), memoryview(new.tobytes()), "F64", "F64")
    assert change.rel == pytest.approx(0.5, rel=1e-12)
    assert change.cos == pytest.approx(1.0, rel=1e-12)
    assert math.isfinite(change.l2) and change.l2 == pytest.approx(0.5 * 1e300 * math.sqrt(2 + 0.09), rel=1e-12)


def test_dtype_change_compares_values() -> None:
    old = np.array([1.0, 0.1, 0.0, np.nan], dtype=np.float32)
    new = old.astype(np.float16)
    change = compare(memoryview(old.tobytes()), memoryview(new.tobytes()), "F32", "F16")
    assert change.changed == 1  # only 0.1 is not exact in fp16
    assert change.l2 == pytest.approx(abs(float(np.float16(0.1)) - float(np.float32(0.1))))


def test_complex_counts_elements_and_uses_real_pairs() -> None:
    old = np.array([1 + 1j, 2 - 1j, 0j], dtype=np.complex64)
    new = np.array([1 + 1j, 2 + 1j, 0j], dtype=np.complex64)
    change = compare(memoryview(old.tobytes()), memoryview(new.tobytes()), "C64", "C64")
    assert change.changed == 1 and change.elements == 3
    assert change.l2 == pytest.approx(2.0)
    assert not numeric.comparable("C64", "F32")


@PROPERTY
@given(
    hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(-1e6, 1e6, width=32)),
    st.data(),
)
def test_property_matches_numpy(old: np.ndarray, data: st.DataObject) -> None:
    new = data.draw(hnp.arrays(np.float32, old.shape, elements=st.floats(-1e6, 1e6, width=32)))
    if not np.linalg.norm(old.astype(np.float64)) or not np.linalg.norm(new.astype(np.float64)):
        return  # the zero-norm conventions are tested above
    check(old, new, "F32")


def reference(old: np.ndarray, new: np.ndarray, scale: float = 1.0) -> dict[str, float]:
    """The statistics over whole float64 arrays, as docs/diff.md defines them (values divided by ``scale`` first)."""
    with np.errstate(invalid="ignore"):  # inf - inf where an infinity did not change: masked out below
        return _reference(old, new, scale)


def _reference(old: np.ndarray, new: np.ndarray, scale: float) -> dict[str, float]:
    o, n = old.astype(np.float64) / scale, new.astype(np.float64) / scale
    if old.dtype == new.dtype:
        bits = np.dtype(f"u{old.dtype.itemsize}")
        changed = old.view(bits) != new.view(bits)
    else:
        changed = ((o != n) | (np.signbit(o) != np.signbit(n))) & ~(np.isnan(o) & np.isnan(n))
    delta = np.where(changed, n - o, 0.0)
    finite = np.isfinite(o) & np.isfinite(n)
    o_norm, n_norm = math.sqrt(float(np.sum(o * o))), math.sqrt(float(np.sum(n * n)))
    return {
        "changed": int(changed.sum()),
        "l2": math.sqrt(float(np.sum(delta * delta))) * scale,
        "old_norm": o_norm * scale,
        "new_norm": n_norm * scale,
        "cos": float(np.sum(o[finite] * n[finite])) / (o_norm * n_norm) if finite.all() else math.nan,
    }


def cut(data: bytes, at: list[int]) -> list[memoryview]:
    """``data`` in blocks cut at the byte offsets ``at`` (inside elements too)."""
    edges = [0, *at, len(data)]
    return [memoryview(data[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def check_blocks(old: np.ndarray, new: np.ndarray, old_dtype: str, new_dtype: str, scale: float = 1.0) -> None:
    whole = compare(memoryview(old.tobytes()), memoryview(new.tobytes()), old_dtype, new_dtype)
    rng = np.random.default_rng(11)
    old_cuts = sorted(rng.choice(old.nbytes, 9, replace=False).tolist())
    new_cuts = sorted(rng.choice(new.nbytes, 5, replace=False).tolist())
    blocked = numeric.compare_blocks(cut(old.tobytes(), old_cuts), cut(new.tobytes(), new_cuts), old_dtype, new_dtype)
    want = reference(old, new, scale)
    for change in (whole, blocked):
        assert change.changed == want["changed"] and change.elements == old.size
        for key in ("l2", "old_norm", "new_norm", "cos"):
            assert getattr(change, key) == pytest.approx(want[key], rel=1e-9, abs=1e-300, nan_ok=True), key


@pytest.mark.parametrize(
    ("old_type", "new_type", "old_dtype", "new_dtype"),
    [
        (np.float32, np.float32, "F32", "F32"),
        (np.float16, np.float16, "F16", "F16"),
        (ml_dtypes.bfloat16, ml_dtypes.bfloat16, "BF16", "BF16"),
        (np.float64, np.float64, "F64", "F64"),
        (np.float32, np.float16, "F32", "F16"),
        (np.float32, np.float64, "F32", "F64"),
    ],
)
def test_chunks_and_blocks_cut_anywhere_match_a_float64_whole_array_reference(
    monkeypatch: pytest.MonkeyPatch, old_type: type, new_type: type, old_dtype: str, new_dtype: str
) -> None:
    """Chunks of 100 elements, blocks cut mid-element; unchanged NaN and inf, a signed zero, a fine-tune's change."""
    monkeypatch.setattr(numeric, "CHUNK", 100)
    rng = np.random.default_rng(12)
    values = rng.standard_normal(1000)
    values[[5, 250]], values[[6, 777]], values[300] = np.nan, np.inf, 0.0
    old = values.astype(old_type)
    tuned = values + rng.standard_normal(1000) * 1e-2
    tuned[[5, 250]], tuned[[6, 777]], tuned[300] = np.nan, np.inf, -0.0
    tuned[::3] = values[::3]  # a third unchanged
    check_blocks(old, tuned.astype(new_type), old_dtype, new_dtype)


def test_float64_scaled_chunk_by_chunk_matches_one_scale_for_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks that need no scaling, chunks of huge values and of tiny ones: the sums meet at the tensor's peak."""
    monkeypatch.setattr(numeric, "CHUNK", 100)
    rng = np.random.default_rng(13)
    old = np.concatenate(
        [rng.standard_normal(300), rng.standard_normal(300) * 1e250, rng.standard_normal(300) * 1e-250]
    )
    new = old * (1 + rng.standard_normal(900) * 1e-3)
    check_blocks(old, new, "F64", "F64", scale=float(max(np.abs(old).max(), np.abs(new).max())))
    tiny = rng.standard_normal(900) * 1e-200
    check_blocks(tiny, tiny * 1.01, "F64", "F64", scale=float(np.abs(tiny * 1.01).max()))


def test_a_changed_infinity_propagates_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numeric, "CHUNK", 100)
    old = np.ones(1000)
    new = old.copy()
    new[50], new[700] = np.inf, 1e300
    change = numeric.compare_blocks([memoryview(old.tobytes())], [memoryview(new.tobytes())], "F64", "F64")
    assert change.changed == 2 and change.l2 == math.inf and change.new_norm == math.inf
