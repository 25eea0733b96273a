"""``delta``: the difference of the bit patterns, as integers, from the previous value.

For each element, ``delta = zigzag(bits(new) - bits(base))`` with wrap-around integer arithmetic, so small changes of
a float give small numbers (their high bytes zero) that byte grouping and zstd store in a few bits, and unchanged
elements give zeros. Rebuilding is integer addition: exact, whatever the values (NaNs and infinities included).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from git_theta.updates.base import Payload, Update


class DeltaUpdate(Update):
    """The new tensor as the integer difference of its bit patterns from the base's."""

    name = "delta"

    def apply(self, base: np.ndarray, payload: Payload) -> np.ndarray:
        bits = _bits(base)
        new_bits = add_zigzag_difference(bits, payload.parts["delta"].reshape(-1).view(bits.dtype))
        return new_bits.view(base.dtype).reshape(base.shape)

    def on_bit_patterns(self, params: dict[str, Any]) -> bool:
        return True

    def infer(self, base: np.ndarray, new: np.ndarray) -> Payload:
        new_bits = _bits(new)
        zigzag = np.empty_like(new_bits)
        zigzag_difference(new_bits, _bits(base), zigzag)
        return Payload({"delta": zigzag}, {})


def zigzag_difference(new_bits: np.ndarray, old_bits: np.ndarray, out: np.ndarray) -> None:
    """``out = zigzag(new_bits - old_bits)``, wrapping, computed in place: ``out`` may be filled block by block."""
    np.subtract(new_bits, old_bits, out=out)
    sign = out.view(np.dtype(f"i{out.itemsize}")) >> (8 * out.itemsize - 1)
    np.left_shift(out, 1, out=out)
    np.bitwise_xor(out, sign.view(out.dtype), out=out)


def add_zigzag_difference(old_bits: np.ndarray, zigzag: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The new bit patterns: ``old_bits`` plus the difference ``zigzag`` encodes, wrapping (inverse of the above).

    Computed in ``out`` (which may be ``zigzag`` itself) with one temporary array, where a block is decoded.
    """
    sign = np.negative(zigzag & 1)  # all ones where the difference is negative
    out = np.right_shift(zigzag, 1, out=out)
    np.bitwise_xor(out, sign, out=out)
    return np.add(out, old_bits, out=out)


def _bits(array: np.ndarray) -> np.ndarray:
    """An array's bit patterns as unsigned integers, per component for complex numbers (``dtypes.bits_dtype``)."""
    complex_ = np.issubdtype(array.dtype, np.complexfloating)
    width = array.dtype.itemsize // 2 if complex_ else array.dtype.itemsize
    return np.ascontiguousarray(array).reshape(-1).view(np.dtype(f"<u{width}"))
