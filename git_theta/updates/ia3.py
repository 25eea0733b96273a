"""``ia3``: ``new = base * ia3``, a learned vector broadcast over the tensor (IA3 adapters).

Part: ``ia3``, whose shape broadcasts to the tensor's (for a linear layer: out x 1 to scale output features,
1 x in to scale input features). The product is taken in float64 and rounded once to the tensor's dtype.
"""

from __future__ import annotations

import numpy as np

from git_theta.updates.base import Payload, Update, UpdateError, round_to, row_chunks, widened


class Ia3Update(Update):
    """A broadcast element-wise scaling of the base."""

    name = "ia3"

    def apply(self, base: np.ndarray, payload: Payload) -> np.ndarray:
        problem = self.mismatch(base.shape, payload)
        if problem:
            raise UpdateError(problem)
        scale = widened(payload.parts["ia3"])
        out, factors = np.empty(base.shape, base.dtype), np.broadcast_to(scale, base.shape)
        for rows in row_chunks(base.shape):  # float64 copies of a few rows at a time, not of the tensor
            out[rows] = round_to(widened(base[rows]) * factors[rows], base.dtype)
        return out

    def mismatch(self, shape: tuple[int, ...], payload: Payload) -> str | None:
        scale = payload.parts["ia3"]
        try:
            if np.broadcast_shapes(shape, scale.shape) == shape:
                return None
        except ValueError:
            pass
        return f"an ia3 vector of shape {scale.shape} does not fit a tensor of shape {shape}"

    def infer(self, base: np.ndarray, new: np.ndarray) -> Payload | None:
        if base.ndim != 2:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = widened(new) / widened(base)
        for axis in (1, 0):  # one factor per output row, then per input column
            candidate = np.nanmedian(np.where(np.isfinite(ratios), ratios, np.nan), axis=axis, keepdims=True)
            if np.all(np.isfinite(candidate)):
                payload = Payload({"ia3": candidate.astype(base.dtype)}, {})
                if np.array_equal(self.apply(base, payload).view(np.uint8), np.ascontiguousarray(new).view(np.uint8)):
                    return payload
        return None
