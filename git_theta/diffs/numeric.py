"""Tensor bytes as numbers, and the statistics of a change; float64 arithmetic, a cache-sized chunk at a time.

Conventions (docs/diff.md):

- An element changed when its bit pattern changed (NaN -> the same NaN is unchanged, 0.0 -> -0.0 is a change). When
  the dtype changed, elements are compared as float64 values (two NaNs are equal, 0.0 and -0.0 are not).
- ``l2`` is ||new - old|| over the changed elements; ``rel`` is l2 / ||old|| (0 when nothing changed, inf when a zero
  tensor changed); ``cos`` is <old, new> / (||old|| ||new||), 1 when both are zero, 0 when exactly one is.
- Complex tensors count as pairs of reals; integers and bool become float64 (64-bit integers beyond 2**53 round).

The sums are taken block by block as the tensors stream from their objects (``compare_blocks``): only chunks of
``CHUNK`` elements are ever converted to float64, so a comparison holds no float64 copy of a tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from git_theta.checkpoints.buffers import keep_freed_memory
from git_theta.diffs.result import Change
from git_theta.dtypes import component_dtype, itemsize

#: Elements converted to float64 at a time: the copies (a few of 512 KiB) stay in the CPU's cache.
CHUNK = 1 << 16
#: Where float64 squares can overflow or vanish: larger or smaller values are scaled first.
_SAFE = (1e-100, 1e100)

_BITS = {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}


def reals(data: bytes | bytearray | memoryview, dtype: str) -> np.ndarray:
    """Return the tensor as a flat float64 array (complex as interleaved real and imaginary parts)."""
    if dtype == "BF16":  # the top half of a float32: widened exactly without ml_dtypes (0.6 s of import)
        wide = np.frombuffer(data, dtype="<u2").astype("<u4")
        return np.left_shift(wide, 16, out=wide).view("<f4").astype(np.float64)
    return np.frombuffer(data, dtype=component_dtype(dtype)).astype(np.float64)


def comparable(old_dtype: str, new_dtype: str) -> bool:
    """Tell whether element-wise statistics make sense across a dtype change (not between complex and real)."""
    return old_dtype.startswith("C") == new_dtype.startswith("C")


def compare(old: memoryview, new: memoryview, old_dtype: str, new_dtype: str) -> Change:
    """Compare two tensors of the same shape (their dtypes must be ``comparable``)."""
    return compare_blocks([old], [new], old_dtype, new_dtype)


def compare_blocks(old: Iterable[memoryview], new: Iterable[memoryview], old_dtype: str, new_dtype: str) -> Change:
    """Compare two tensors of the same shape given as blocks of bytes, which may be cut at different places.

    A block is used before the next one of its tensor is taken, so the blocks of a stream may reuse one buffer.
    """
    return compare_pairs(aligned(old, new, itemsize(old_dtype), itemsize(new_dtype)), old_dtype, new_dtype)


def compare_pairs(pairs: Iterable[tuple[memoryview, memoryview]], old_dtype: str, new_dtype: str) -> Change:
    """Compare two tensors of the same shape given as pieces that hold the same elements of both."""
    sums = Sums(old_dtype, new_dtype)
    for old_piece, new_piece in pairs:
        sums.add(old_piece, new_piece)
    return sums.change()


def aligned(
    old: Iterable[memoryview], new: Iterable[memoryview], old_size: int, new_size: int
) -> Iterator[tuple[memoryview, memoryview]]:
    """Pair the two streams' bytes into pieces holding the same number of whole elements (slices, no copies, unless
    a block ends inside an element)."""
    old_blocks, new_blocks = iter(old), iter(new)
    a, b = memoryview(b""), memoryview(b"")
    while True:
        a, b = _refill(a, old_blocks, old_size), _refill(b, new_blocks, new_size)
        count = min(len(a) // old_size, len(b) // new_size)
        if count == 0:
            if len(a) or len(b):
                raise ValueError("the two tensors do not hold the same number of elements")
            return
        yield a[: count * old_size], b[: count * new_size]
        a, b = a[count * old_size :], b[count * new_size :]


def _refill(rest: memoryview, blocks: Iterator[memoryview], size: int) -> memoryview:
    """``rest`` if it holds a whole element, else it joined with the next blocks until it does (or they end)."""
    while len(rest) < size:
        block = next(blocks, None)
        if block is None:
            return rest
        block = memoryview(block).cast("B")
        rest = block if not len(rest) else memoryview(bytes(rest) + bytes(block))
    return rest


class Sums:
    """The running sums of a comparison: changed elements, ||delta||^2, ||old||^2, ||new||^2 and <old, new>.

    float64 tensors are scaled chunk by chunk when their values are beyond 1e±100 (``_SAFE``); the sums are kept
    at the largest of the chunks' scales so far. That is the scale one pass over the whole tensor would choose:
    its peak when the peak lies outside ``_SAFE``, else 1.
    """

    def __init__(self, old_dtype: str, new_dtype: str) -> None:
        self.old_dtype, self.new_dtype = old_dtype, new_dtype
        self.same = old_dtype == new_dtype
        self.width = 2 if old_dtype.startswith("C") else 1
        self.scaled = bool({old_dtype, new_dtype} & {"F64", "C128"})  # every other type squares safely
        self.old_size, self.new_size = itemsize(old_dtype), itemsize(new_dtype)
        self.changed = self.count = 0
        self.scale = 0.0  # none yet: the first chunk's
        self.sums = np.zeros(4)  # ||delta||^2, ||old||^2, ||new||^2, <old, new>; at ``scale``

    def add(self, old: memoryview, new: memoryview) -> None:
        """Add a piece of each tensor (the same elements of both)."""
        count = len(old) // self.old_size
        if count > CHUNK:  # a large tensor: its chunks' float64 copies are allocated and freed, over and over
            keep_freed_memory()
        for start in range(0, count, CHUNK):
            stop = min(count, start + CHUNK)
            self._add_chunk(
                old[start * self.old_size : stop * self.old_size], new[start * self.new_size : stop * self.new_size]
            )
        self.count += count

    @np.errstate(invalid="ignore", over="ignore")  # inf - inf and the like: non-finite values propagate, silently
    def _add_chunk(self, old_raw: memoryview, new_raw: memoryview) -> None:
        o, n = reals(old_raw, self.old_dtype), reals(new_raw, self.new_dtype)
        mask = _bits_changed(old_raw, new_raw, self.old_dtype) if self.same else _values_changed(o, n, self.width)
        self.changed += int(np.count_nonzero(mask))
        scale = _peak(o, n) if self.scaled else 1.0
        if scale != 1.0:
            o /= scale
            n /= scale
        delta = n - o
        squared = _dot(delta, delta)
        if not math.isfinite(squared):  # only then can an unchanged element (inf -> inf, NaN -> NaN) count
            delta[~(np.repeat(mask, 2) if self.width == 2 else mask)] = 0.0
            squared = _dot(delta, delta)
        self._merge(np.array((squared, _dot(o, o), _dot(n, n), _dot(o, n))), scale)

    def _merge(self, sums: np.ndarray, scale: float) -> None:
        """Add sums taken at ``scale`` to the running sums, both brought to the larger of the two scales."""
        if scale > self.scale:
            self.sums, self.scale = _rescale(self.sums, (self.scale / scale) ** 2), scale
        elif scale < self.scale:
            sums = _rescale(sums, (scale / self.scale) ** 2)
        self.sums += sums

    def change(self) -> Change:
        """The statistics of the whole comparison."""
        return _change(self.changed, self.sums, self.count, self.scale)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """<a, b> on this thread: BLAS's dot hands long vectors to its own threads, which on a loaded machine (or beside
    the other comparisons and decoders) made it several times slower."""
    return float(np.einsum("i,i->", a, b))


def _rescale(sums: np.ndarray, factor: float) -> np.ndarray:
    """Sums multiplied by ``factor``; infinite and NaN sums stay as they are (a factor may underflow to 0)."""
    return np.where(np.isfinite(sums), sums * factor, sums)


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


def _peak(old: np.ndarray, new: np.ndarray) -> float:
    """A factor that keeps float64 squares of a chunk finite and non-zero: its largest finite magnitude when that
    lies outside ``_SAFE``, else 1."""
    peak = 0.0
    for values in (old, new):
        finite = np.abs(values[np.isfinite(values)])
        if len(finite):
            peak = max(peak, float(finite.max()))
    return peak if peak > 0 and not _SAFE[0] <= peak <= _SAFE[1] else 1.0


def _change(changed: int, sums: np.ndarray, count: int, scale: float) -> Change:
    delta, old, new, dot = (float(value) for value in sums)
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
    return Change(changed, count, l2, rel, cos, old_norm, new_norm)
