"""``delta``: the difference of the bit patterns, as integers, from the previous value.

For each element, ``delta = zigzag(bits(new) - bits(base))`` with wrap-around integer arithmetic, so small changes of
a float give small numbers (their high bytes zero) that byte grouping and zstd store in a few bits, and unchanged
elements give zeros. Rebuilding is integer addition: exact, whatever the values (NaNs and infinities included).
"""

from __future__ import annotations

import numpy as np

from git_theta.updates.base import Payload, Update

#: Complex numbers are differenced per component.
_WIDTH = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}


class DeltaUpdate(Update):
    """The new tensor as the integer difference of its bit patterns from the base's."""

    name = "delta"

    def apply(self, base: np.ndarray, payload: Payload) -> np.ndarray:
        bits = _bits(base)
        zigzag = payload.parts["delta"].reshape(-1).view(bits.dtype)
        difference = (zigzag >> 1) ^ (0 - (zigzag & 1))
        return (bits + difference).view(base.dtype).reshape(base.shape)

    def infer(self, base: np.ndarray, new: np.ndarray) -> Payload:
        old_bits, new_bits = _bits(base), _bits(new)
        difference = new_bits - old_bits
        signed = difference.view(np.dtype(f"i{difference.itemsize}"))
        zigzag = (difference << 1) ^ (signed >> (8 * difference.itemsize - 1)).view(difference.dtype)
        return Payload({"delta": zigzag}, {})


def _bits(array: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(array).reshape(-1)
    width = array.dtype.itemsize // 2 if np.issubdtype(array.dtype, np.complexfloating) else array.dtype.itemsize
    return flat.view(_WIDTH[width])
