"""``low-rank``: ``new = base + scale * R @ C``, as LoRA adapters and the original Git-Theta's low-rank updates give.

Parts: ``R`` (m x r) and ``C`` (r x n) for an m x n tensor; parameter ``scale`` (default 1). The product is summed
rank by rank, in float64, with element-wise operations only, then added to the base and rounded once to the
tensor's dtype: the same bits on every machine, which a BLAS product does not promise. It is computed a few rows at
a time, so memory holds the tensor and a few float64 chunks.
"""

from __future__ import annotations

import numpy as np

from git_theta.updates.base import Payload, Update, UpdateError, round_to, row_chunks, widened


class LowRankUpdate(Update):
    """A product of two thin factors added to the base."""

    name = "low-rank"

    def apply(self, base: np.ndarray, payload: Payload) -> np.ndarray:
        left, right = widened(payload.parts["R"]), widened(payload.parts["C"])
        if base.ndim != 2 or left.ndim != 2 or right.ndim != 2:
            raise UpdateError("a low-rank update needs a 2-D tensor and 2-D factors")
        rows, columns = base.shape
        if left.shape[0] != rows or right.shape[1] != columns or left.shape[1] != right.shape[0]:
            raise UpdateError(f"low-rank factors {left.shape} and {right.shape} do not fit a {base.shape} tensor")
        scale = float(payload.params.get("scale", 1.0))
        out = np.empty(base.shape, base.dtype)
        for rows in row_chunks(base.shape):  # a few rows at a time: float64 copies of chunks, not of the tensor
            product = np.zeros((len(left[rows]), columns), dtype=np.result_type(left, right))
            term = np.empty_like(product)
            for rank in range(left.shape[1]):
                product += np.multiply.outer(left[rows, rank], right[rank, :], out=term)
            if scale != 1.0:
                product *= scale
            out[rows] = round_to(widened(base[rows]) + product, base.dtype)
        return out
