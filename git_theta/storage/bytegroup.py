"""Byte grouping: the transposition that makes floating-point weights compress (as in ZipNN).

A block of elements ``group`` bytes wide is rewritten as all first bytes, then all second bytes, and so on; bytes
past the last whole element stay at the end. Sign and exponent bytes vary slowly across weights and compress well
once side by side; the noisy low mantissa bytes are kept apart from them.
"""

from __future__ import annotations

import sys

#: Tensors at least this large are ungrouped with numpy, whose import then costs little next to the work.
NUMPY_UNGROUP = 64 << 20
#: Blocks at least this large are grouped with numpy (imported then, if it was not yet).
NUMPY_GROUP = 64 << 10


def group_bytes(block: memoryview, group: int) -> bytes | memoryview:
    """Return ``block`` byte-grouped: every element's first byte, then every second byte, and so on."""
    whole = len(block) // group * group
    if group == 1 or whole == 0:
        return block
    if whole < NUMPY_GROUP and "numpy" not in sys.modules:
        return _group_slices(block, whole, group)
    import numpy as np  # imported for the first large block: small files are stored without it

    elements = np.frombuffer(block, dtype=np.uint8, count=whole).reshape(-1, group)
    grouped = np.empty((group, len(elements)), dtype=np.uint8)
    for column in range(group):  # one strided copy per byte column is ~3x faster than a transposed copy
        grouped[column] = elements[:, column]
    if whole == len(block):
        return grouped.data.cast("B")
    return grouped.tobytes() + bytes(block[whole:])


def _group_slices(block: memoryview, whole: int, group: int) -> bytes:
    # Strided memoryview slices are C loops: a small checkpoint is stored without importing numpy (~60 ms).
    with memoryview(block).cast("B") as view:
        return b"".join([view[column:whole:group].tobytes() for column in range(group)]) + bytes(view[whole:])


def ungroup_bytes(
    grouped: bytes | bytearray, length: int, out: bytearray, start: int, group: int, tensor_size: int = 0
) -> None:
    """Undo the byte grouping of ``grouped[:length]`` into ``out[start:start + length]`` (a block of a tensor)."""
    whole = length // group * group
    column = whole // group
    if column and (max(len(out), tensor_size) >= NUMPY_UNGROUP or "numpy" in sys.modules):
        _ungroup_numpy(grouped, whole, out, start, group)
    elif column:
        _ungroup_slices(grouped, whole, out, start, group)
    out[start + whole : start + length] = grouped[whole:length]


def _ungroup_slices(grouped: bytes | bytearray, whole: int, out: bytearray, start: int, group: int) -> None:
    # bytearray's extended-slice assignment is a C loop: small checkouts skip numpy's import (~60 ms).
    column = whole // group
    with memoryview(grouped) as source:
        for index in range(group):
            out[start + index : start + whole : group] = source[index * column : (index + 1) * column]


def _ungroup_numpy(grouped: bytes | bytearray, whole: int, out: bytearray, start: int, group: int) -> None:
    # numpy releases the GIL while copying, so large tensors decode in parallel on every core.
    import numpy as np

    columns = np.frombuffer(grouped, dtype=np.uint8, count=whole).reshape(group, -1)
    elements = np.frombuffer(out, dtype=np.uint8, count=whole, offset=start).reshape(-1, group)
    for index in range(group):
        elements[:, index] = columns[index]
