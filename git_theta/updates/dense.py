"""``dense``: the tensor stored whole. A dense entry has no base; as an update, its payload replaces the base."""

from __future__ import annotations

import numpy as np

from git_theta.updates.base import Payload, Update


class DenseUpdate(Update):
    """The whole new value."""

    name = "dense"

    def apply(self, base: np.ndarray, payload: Payload) -> np.ndarray:
        return payload.parts["value"].reshape(base.shape).astype(base.dtype, copy=False)

    def infer(self, base: np.ndarray, new: np.ndarray) -> Payload:
        return Payload({"value": new}, {})

    def mismatch(self, shape: tuple[int, ...], payload: Payload) -> str | None:
        value = payload.parts["value"]
        if value.size == int(np.prod(shape, dtype=np.int64)):
            return None
        return f"a new value of shape {value.shape} does not fit a tensor of shape {shape}"
