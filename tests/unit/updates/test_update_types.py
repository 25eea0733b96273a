"""Update types as numbers: each rebuilds exactly what its formula says, rounded once."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from git_theta.updates.base import Payload, UpdateError
from git_theta.updates.ia3 import Ia3Update
from git_theta.updates.low_rank import LowRankUpdate
from git_theta.updates.sparse import SparseUpdate


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
