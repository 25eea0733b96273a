"""``low-rank``: ``new = base + scale * R @ C``, as LoRA adapters and the original Git-Theta's low-rank updates give.

Parts: ``R`` (m x r) and ``C`` (r x n) for a tensor viewed as an m x n matrix (its first axis by all the others: a
conv kernel as out x in * kh * kw, as PEFT's LoRA sees it, a bias vector as a column); parameter ``scale``
(default 1). The product is summed rank by rank, in float64, with element-wise operations only, then added to the
base and rounded once to the tensor's dtype: the same bits on every machine, which a BLAS product does not promise.
It is computed a few rows at a time, so memory holds the tensor and a few float64 chunks.
"""

from __future__ import annotations

import numpy as np

from git_theta.updates.base import Payload, Update, UpdateError, as_matrix, round_to, row_chunks, widened


class LowRankUpdate(Update):
    """A product of two thin factors added to the base."""

    name = "low-rank"

    def apply(self, base: np.ndarray, payload: Payload) -> np.ndarray:
        problem = self.mismatch(base.shape, payload)
        if problem:
            raise UpdateError(problem)
        matrix = base.reshape(as_matrix(base.shape))
        left, right = widened(payload.parts["R"]), widened(payload.parts["C"])
        scale = float(payload.params.get("scale", 1.0))
        out = np.empty(matrix.shape, base.dtype)
        for rows in row_chunks(matrix.shape):  # a few rows at a time: float64 copies of chunks, not of the tensor
            out[rows] = round_to(widened(matrix[rows]) + low_rank_product(left[rows], right, scale), base.dtype)
        return out.reshape(base.shape)

    def mismatch(self, shape: tuple[int, ...], payload: Payload) -> str | None:
        left, right = payload.parts["R"], payload.parts["C"]
        rows, columns = as_matrix(shape)
        if left.ndim != 2 or right.ndim != 2 or left.shape[1] != right.shape[0]:
            return f"low-rank factors of shapes {left.shape} and {right.shape} are not an m x r and an r x n matrix"
        if (left.shape[0], right.shape[1]) != (rows, columns):
            return f"low-rank factors {left.shape} and {right.shape} do not fit a tensor of shape {shape}"
        return None


def low_rank_product(left: np.ndarray, right: np.ndarray, scale: float) -> np.ndarray:
    """``scale * left @ right`` in float64, summed rank by rank in a fixed order with element-wise operations."""
    product = np.zeros((left.shape[0], right.shape[1]), dtype=np.result_type(left, right))
    term = np.empty_like(product)
    for rank in range(left.shape[1]):
        product += np.multiply.outer(left[:, rank], right[rank, :], out=term)
    if scale != 1.0:
        product *= scale
    return product
