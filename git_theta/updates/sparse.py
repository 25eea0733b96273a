"""``sparse``: only some elements changed; the update lists their flat positions and values.

Parts: ``indices`` (I64, strictly increasing flat C-order positions) and ``values`` (one per index). Parameter
``mode``: ``set`` (the new values themselves; what git-theta infers, always exact) or ``add`` (differences added to
the base in float64 and rounded once to the tensor's dtype; what a sparse update file holds).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from git_theta.updates.base import Payload, Update, UpdateError, round_to, widened


class SparseUpdate(Update):
    """A few elements set or incremented."""

    name = "sparse"

    def apply(self, base: np.ndarray, payload: Payload) -> np.ndarray:
        indices = payload.parts["indices"].reshape(-1).astype(np.int64, copy=False)
        values = payload.parts["values"].reshape(-1)
        if len(indices) != len(values):
            raise UpdateError("a sparse update has different numbers of indices and values")
        if len(indices) and (indices[0] < 0 or indices[-1] >= base.size or np.any(np.diff(indices) <= 0)):
            raise UpdateError("a sparse update has indices out of range or out of order")
        new = np.array(base, copy=True).reshape(-1)
        if payload.params.get("mode", "set") == "set":
            new[indices] = values.astype(base.dtype, copy=False)
        else:
            new[indices] = round_to(widened(new[indices]) + widened(values), base.dtype)
        return new.reshape(base.shape)

    def on_bit_patterns(self, params: dict[str, Any]) -> bool:
        return params.get("mode", "set") == "set"

    def mismatch(self, shape: tuple[int, ...], payload: Payload) -> str | None:
        indices, size = payload.parts["indices"].reshape(-1), int(np.prod(shape, dtype=np.int64))
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= size):
            return f"a sparse update has indices out of range for a tensor of shape {shape}"
        return None

    def infer(self, base: np.ndarray, new: np.ndarray) -> Payload:
        width = base.dtype.itemsize
        old_bytes = np.ascontiguousarray(base).reshape(-1).view(np.uint8).reshape(base.size, width)
        new_bytes = np.ascontiguousarray(new).reshape(-1).view(np.uint8).reshape(new.size, width)
        changed = np.flatnonzero(np.any(old_bytes != new_bytes, axis=1))  # bit patterns: -0.0 and NaNs count
        return Payload({"indices": changed.astype(np.int64), "values": new.reshape(-1)[changed]}, {"mode": "set"})
