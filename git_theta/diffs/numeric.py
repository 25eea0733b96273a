"""Tensor bytes as numbers, and the statistics of a change; all arithmetic in float64, a chunk at a time.

Conventions (docs/diff.md):

- An element changed when its bit pattern changed (NaN -> the same NaN is unchanged, 0.0 -> -0.0 is a change). When
  the dtype changed, elements are compared as float64 values (two NaNs are equal, 0.0 and -0.0 are not).
- ``l2`` is ||new - old|| over the changed elements; ``rel`` is l2 / ||old|| (0 when nothing changed, inf when a zero
  tensor changed); ``cos`` is <old, new> / (||old|| ||new||), 1 when both are zero, 0 when exactly one is.
- Complex tensors count as pairs of reals; integers and bool become float64 (64-bit integers beyond 2**53 round).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from git_theta.dtypes import component_dtype, itemsize

#: Elements per chunk: bounds the float64 copies of a large tensor to a few tens of MB.
CHUNK = 1 << 22
#: Where float64 squares can overflow or vanish: larger or smaller values are scaled first.
_SAFE = (1e-100, 1e100)

_BITS = {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}


@dataclass(frozen=True)
class Change:
    """How a tensor of unchanged shape changed."""

    changed: int
    elements: int
    l2: float
    rel: float
    cos: float
    old_norm: float
    new_norm: float

    @property
    def fraction(self) -> float:
        """Fraction of elements that changed (0 for an empty tensor)."""
        return self.changed / self.elements if self.elements else 0.0


def reals(data: bytes | bytearray | memoryview, dtype: str) -> np.ndarray:
    """Return the tensor as a flat float64 array (complex as interleaved real and imaginary parts)."""
    return np.frombuffer(data, dtype=component_dtype(dtype)).astype(np.float64)


def comparable(old_dtype: str, new_dtype: str) -> bool:
    """Tell whether element-wise statistics make sense across a dtype change (not between complex and real)."""
    return old_dtype.startswith("C") == new_dtype.startswith("C")


@np.errstate(invalid="ignore", over="ignore")  # inf - inf and the like: non-finite values propagate, silently
def compare(old: memoryview, new: memoryview, old_dtype: str, new_dtype: str) -> Change:
    """Compare two tensors of the same shape (their dtypes must be ``comparable``)."""
    width = 2 if old_dtype.startswith("C") else 1
    count = len(old) // itemsize(old_dtype)
    scale = _scale(old, new, old_dtype, new_dtype)
    sums = np.zeros(5)  # changed, ||delta||^2, ||old||^2, ||new||^2, <old, new>
    for start in range(0, count, CHUNK):
        stop = min(count, start + CHUNK)
        o_raw, n_raw = _slice(old, old_dtype, start, stop), _slice(new, new_dtype, start, stop)
        o, n = reals(o_raw, old_dtype), reals(n_raw, new_dtype)
        mask = _bits_changed(o_raw, n_raw, old_dtype) if old_dtype == new_dtype else _values_changed(o, n, width)
        if scale != 1.0:
            o, n = o / scale, n / scale
        delta = np.where(np.repeat(mask, width) if width == 2 else mask, n - o, 0.0)
        sums += (np.count_nonzero(mask), delta @ delta, o @ o, n @ n, o @ n)
    return _change(sums, count, scale)


def _slice(data: memoryview, dtype: str, start: int, stop: int) -> memoryview:
    size = itemsize(dtype)
    return data[start * size : stop * size]


def _bits_changed(old: memoryview, new: memoryview, dtype: str) -> np.ndarray:
    size = itemsize(dtype)
    if size == 16:
        a = np.frombuffer(old, dtype="<u8").reshape(-1, 2)
        b = np.frombuffer(new, dtype="<u8").reshape(-1, 2)
        return (a != b).any(axis=1)
    return np.frombuffer(old, dtype=_BITS[size]) != np.frombuffer(new, dtype=_BITS[size])


def _values_changed(old: np.ndarray, new: np.ndarray, width: int) -> np.ndarray:
    differs = ((old != new) | (np.signbit(old) != np.signbit(new))) & ~(np.isnan(old) & np.isnan(new))
    return differs.reshape(-1, 2).any(axis=1) if width == 2 else differs


def _scale(old: memoryview, new: memoryview, old_dtype: str, new_dtype: str) -> float:
    """A factor that keeps float64 squares finite and non-zero; 1 unless a float64 tensor needs it."""
    if not {old_dtype, new_dtype} & {"F64", "C128"}:
        return 1.0  # every other type squares safely in float64
    peak = 0.0
    for data, dtype in ((old, old_dtype), (new, new_dtype)):
        values = np.abs(reals(data, dtype))
        finite = values[np.isfinite(values)]
        if len(finite):
            peak = max(peak, float(finite.max()))
    return peak if peak > 0 and not _SAFE[0] <= peak <= _SAFE[1] else 1.0


def _change(sums: np.ndarray, count: int, scale: float) -> Change:
    changed, delta, old, new, dot = (float(value) for value in sums)
    l2, old_norm, new_norm = (math.sqrt(value) * scale for value in (delta, old, new))
    if old_norm > 0:
        rel = l2 / old_norm
    else:
        rel = l2 if math.isnan(l2) or math.isnan(old_norm) else (0.0 if l2 == 0 else math.inf)
    if old_norm == 0 and new_norm == 0:
        cos = 1.0
    elif old_norm == 0 or new_norm == 0:
        cos = 0.0
    else:
        cos = max(-1.0, min(1.0, dot / (math.sqrt(old) * math.sqrt(new)))) if not math.isnan(dot) else math.nan
    return Change(int(changed), count, l2, rel, cos, old_norm, new_norm)
