"""Byte grouping: the transposition that makes floating-point weights compress (as in ZipNN).

A block of elements ``group`` bytes wide is rewritten as all first bytes, then all second bytes, and so on; bytes
past the last whole element stay at the end. Sign and exponent bytes vary slowly across weights and compress well
once side by side; the noisy low mantissa bytes are kept apart from them.

With ``signbit`` (elements 2 or 4 bytes wide, little-endian), the sign bit trades places with the exponent in each
element's top two bytes ``hi`` and ``lo``: the top stream holds ``hi << 1 | lo >> 7`` (the whole 8-bit exponent of a
bfloat16 or float32) and the next ``lo & 0x7F | hi & 0x80`` (the sign, then the top mantissa bits). The exponent
stream then has no random sign bit in it (ZipNN's sign-bit reordering); lower mantissa bytes are untouched, so the
zero low bytes of upcast weights stay zero.

Elements 2, 4 or 8 bytes wide are (un)grouped with whole-element integer shifts, which numpy vectorises.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any

#: Tensors at least this large are ungrouped with numpy, whose import then costs little next to the work.
NUMPY_UNGROUP = 64 << 20
#: Blocks at least this large are grouped with numpy (imported then, if it was not yet).
NUMPY_GROUP = 64 << 10

#: Element widths (un)grouped as whole little-endian integers.
WORD_WIDTHS = (2, 4, 8)

#: Element widths whose sign bit may be moved out of the exponent's byte.
SIGNBIT_WIDTHS = (2, 4)

Buffer = bytes | bytearray | memoryview
#: Where decoded bytes are written: a bytearray, or a memoryview of one or of a numpy array.
Writable = bytearray | memoryview

_local = threading.local()


def tensor_buffer(size: int) -> Writable:
    """A writable buffer of ``size`` bytes, all of which the caller overwrites.

    Once numpy is loaded it is numpy's uninitialised memory (backed by huge pages when large): zeroing a bytearray
    and faulting in its pages one by one costs as much as decoding a tensor.
    """
    if "numpy" not in sys.modules:
        return bytearray(size)
    import numpy as np

    return np.empty(size, dtype=np.uint8).data


def group_bytes(block: memoryview, group: int) -> bytes | memoryview:
    """Return ``block`` byte-grouped: every element's first byte, then every second byte, and so on."""
    if group == 1 or len(block) < group:
        return block
    return b"".join(split_bytes(block, group, reuse=True))


def split_bytes(block: memoryview, group: int, signbit: bool = False, reuse: bool = False) -> list[memoryview]:
    """Return the ``group`` byte streams of ``block`` (the sign bit moved when ``signbit``), all of one length, then
    the bytes past the last whole element (possibly none).

    With ``reuse``, the streams are written to this thread's scratch memory, and are valid only until its next call
    with ``reuse``: for callers that copy or compress them at once (filling fresh memory for every 1 MiB block
    costs a page fault per 4 KiB, and threads faulting at once contend for the process's memory map)."""
    _check_signbit(signbit, group)
    whole = len(block) // group * group
    if group == 1 or whole == 0:
        return [memoryview(block)[:whole]] * group + [memoryview(block)[whole:]]
    if whole < NUMPY_GROUP and "numpy" not in sys.modules:
        return _split_slices(memoryview(block).cast("B"), whole, group, signbit)
    import numpy as np  # imported for the first large block: small files are stored without it

    column = whole // group
    grouped = _scratch(-1, whole) if reuse else np.empty(whole, dtype=np.uint8)
    grouped = grouped.reshape(group, column)
    if group in WORD_WIDTHS:
        # Shifted words land in a per-thread scratch array, not in a new temporary per byte (as above).
        words = np.frombuffer(block, dtype=f"<u{group}", count=column)
        shifted = _scratch(group, column)
        np.copyto(grouped[0], words, casting="unsafe")
        for index in range(1, group):
            np.right_shift(words, np.uint8(8 * index), out=shifted)
            np.copyto(grouped[index], shifted, casting="unsafe")
    else:
        elements = np.frombuffer(block, dtype=np.uint8, count=whole).reshape(-1, group)
        for index in range(group):  # one strided copy per byte column is ~3x faster than a transposed copy
            grouped[index] = elements[:, index]
    if signbit:
        _move_signbit_in_place(grouped[group - 1], grouped[group - 2])
    data = memoryview(grouped.data).cast("B")
    return [data[index * column : (index + 1) * column] for index in range(group)] + [memoryview(block)[whole:]]


def _move_signbit_in_place(hi: Any, lo: Any) -> None:
    """The sign-bit move (see the module) on two byte streams, in place, with per-thread scratch."""
    import numpy as np

    scratch = _scratch(1, 2 * len(hi))
    sign, carry = scratch[: len(hi)], scratch[len(hi) :]
    np.bitwise_and(hi, np.uint8(0x80), out=sign)
    np.right_shift(lo, np.uint8(7), out=carry)
    np.left_shift(hi, np.uint8(1), out=hi)
    np.bitwise_or(hi, carry, out=hi)
    np.bitwise_and(lo, np.uint8(0x7F), out=lo)
    np.bitwise_or(lo, sign, out=lo)


def _split_slices(view: memoryview, whole: int, group: int, signbit: bool) -> list[memoryview]:
    # Strided memoryview slices are C loops: a small checkpoint is stored without importing numpy (~60 ms).
    streams = [view[index:whole:group].tobytes() for index in range(group)]
    if signbit:
        streams[-1], streams[-2] = _move_signbit(streams[-1], streams[-2])
    return [memoryview(stream) for stream in streams] + [view[whole:]]


def ungroup_bytes(grouped: Buffer, length: int, out: Writable, start: int, group: int, tensor_size: int = 0) -> None:
    """Undo the byte grouping of ``grouped[:length]`` into ``out[start:start + length]`` (a block of a tensor)."""
    column = length // group
    view = memoryview(grouped)
    streams = [view[index * column : (index + 1) * column] for index in range(group)]
    interleave(streams, view[column * group : length], out, start, group, tensor_size)


def interleave(
    streams: Sequence[Buffer],
    tail: Buffer,
    out: Writable,
    start: int,
    group: int,
    tensor_size: int = 0,
    signbit: bool = False,
) -> None:
    """Write the elements whose byte ``i`` is in ``streams[i]`` (all of one length), then ``tail``, to ``out`` at
    ``start``; move each sign bit back first when ``signbit``."""
    use_numpy = max(len(out), tensor_size) >= NUMPY_UNGROUP or "numpy" in sys.modules
    interleave_with(use_numpy, streams, tail, out, start, group, signbit)


def interleave_with(
    use_numpy: bool, streams: Sequence[Buffer], tail: Buffer, out: Writable, start: int, group: int, signbit: bool
) -> None:
    """``interleave`` with numpy, or with bytearray slices and Python integers (both paths give the same bytes)."""
    _check_signbit(signbit, group)
    column = len(streams[0]) if streams else 0
    whole = column * group
    if column and group > 1:
        if use_numpy:
            _interleave_numpy(streams, out, start, group, signbit)
        else:
            if signbit:
                hi, lo = _restore_signbit(streams[-1], streams[-2])
                streams = [*streams[:-2], lo, hi]
            _interleave_slices(streams, out, start, group)
    elif column:
        out[start : start + column] = streams[0]
    out[start + whole : start + whole + len(tail)] = tail


def _interleave_slices(streams: Sequence[Buffer], out: Writable, start: int, group: int) -> None:
    # bytearray's extended-slice assignment is a C loop: small checkouts skip numpy's import (~60 ms).
    whole = len(streams[0]) * group
    for index, stream in enumerate(streams):
        out[start + index : start + whole : group] = stream


def _move_signbit(hi: bytes, lo: bytes) -> tuple[bytes, bytes]:
    """The sign-bit move of two streams with Python's big integers (no numpy): return ``(top, next)``."""
    count = len(hi)
    whole_hi, whole_lo = int.from_bytes(hi, "little"), int.from_bytes(lo, "little")
    low7, high1 = int.from_bytes(b"\x7f" * count, "little"), int.from_bytes(b"\x80" * count, "little")
    top = ((whole_hi & low7) << 1) | ((whole_lo & high1) >> 7)
    next_ = (whole_lo & low7) | (whole_hi & high1)
    return top.to_bytes(count, "little"), next_.to_bytes(count, "little")


def _restore_signbit(top: Buffer, next_: Buffer) -> tuple[bytes, bytes]:
    """Undo the sign-bit move of two streams with Python's big integers (no numpy): return ``(hi, lo)``."""
    count = len(top)
    stored_hi, stored_lo = int.from_bytes(top, "little"), int.from_bytes(next_, "little")
    low7, high1 = int.from_bytes(b"\x7f" * count, "little"), int.from_bytes(b"\x80" * count, "little")
    hi = ((stored_hi >> 1) & low7) | (stored_lo & high1)
    lo = (stored_lo & low7) | ((stored_hi << 7) & high1)
    return hi.to_bytes(count, "little"), lo.to_bytes(count, "little")


def _interleave_numpy(streams: Sequence[Buffer], out: Writable, start: int, group: int, signbit: bool) -> None:
    # numpy releases the GIL while copying, so large tensors decode in parallel on every core.
    import numpy as np

    column = len(streams[0])
    if group not in WORD_WIDTHS:
        elements = np.frombuffer(out, dtype=np.uint8, count=column * group, offset=start).reshape(-1, group)
        for index, stream in enumerate(streams):
            elements[:, index] = np.frombuffer(stream, dtype=np.uint8)
        return
    # Whole words, built with shifts and ORs straight from the byte streams (each cast to words as it is read).
    word = np.dtype(f"<u{group}")
    words = np.frombuffer(out, dtype=word, count=column, offset=start)
    scratch = _scratch(group, column)
    if signbit and group == 2:
        _top_half_with_signbit(streams[1], streams[0], words, scratch)
        return
    if signbit:  # float32: each half built as 16-bit words (half the bytes per pass), then joined in one pass
        halves = scratch.view("<u2")
        high, low = halves[:column], halves[column:]
        _top_half_with_signbit(streams[3], streams[2], high, words.view("<u2")[:column])
        np.left_shift(np.frombuffer(streams[1], dtype=np.uint8), np.uint8(8), out=low, dtype=low.dtype)
        np.bitwise_or(low, np.frombuffer(streams[0], dtype=np.uint8), out=low)
        np.left_shift(high, np.uint8(16), out=words, dtype=word)
        np.bitwise_or(words, low, out=words)
        return
    np.left_shift(np.frombuffer(streams[-1], dtype=np.uint8), np.uint8(8 * group - 8), out=words, dtype=word)
    for index in range(1, group - 1):
        np.left_shift(np.frombuffer(streams[index], dtype=np.uint8), np.uint8(8 * index), out=scratch, dtype=word)
        np.bitwise_or(words, scratch, out=words)
    np.bitwise_or(words, np.frombuffer(streams[0], dtype=np.uint8), out=words)


def _top_half_with_signbit(top: Buffer, next_: Buffer, half: Any, scratch: Any) -> None:
    """Set ``half`` (16-bit words) to the elements' top two bytes, rebuilt from the streams whose sign bit was moved
    (see the module), with ``scratch`` (16-bit words) to work in."""
    import numpy as np

    # The stored top byte holds bits 14 .. 7 of the half: the exponent, and the top mantissa bit.
    np.left_shift(np.frombuffer(top, dtype=np.uint8), np.uint8(7), out=half, dtype=half.dtype)
    # The stored next byte is the sign, then 7 mantissa bits: widened as an int8, its sign fills the top bits, and
    # the mask 0x807F keeps the top one and the 7 mantissa bits. (Masking as numpy widens, in one call, is slower.)
    np.copyto(scratch.view("<i2"), np.frombuffer(next_, dtype=np.int8))
    np.bitwise_and(scratch, np.uint16(0x807F), out=scratch)
    np.bitwise_or(half, scratch, out=half)


def _scratch(group: int, column: int) -> Any:
    """A per-thread array of ``column`` words of ``group`` bytes, reused across blocks (its contents are gone at
    the next call on the same thread). Group -1 is a second array of bytes: where ``split_bytes`` groups."""
    import numpy as np

    cache = getattr(_local, "scratch", None)
    if cache is None:
        cache = _local.scratch = {}
    array = cache.get(group)
    if array is None or len(array) < column:
        array = cache[group] = np.empty(column, dtype=f"<u{max(group, 1)}")
    return array[:column]


def _check_signbit(signbit: bool, group: int) -> None:
    if signbit and group not in SIGNBIT_WIDTHS:
        raise ValueError(f"the sign bit of elements {group} bytes wide is never moved")
