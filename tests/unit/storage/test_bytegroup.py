"""Byte grouping round trips, through both ungrouping paths (numpy for large tensors, slices for small ones)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from git_theta.storage import bytegroup


def reference_group(block: bytes, group: int) -> bytes:
    whole = len(block) // group * group
    return np.frombuffer(block[:whole], dtype=np.uint8).reshape(-1, group).T.tobytes() + block[whole:]


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), group=st.sampled_from([1, 2, 4, 8, 16]), offset=st.integers(0, 37))
def test_group_then_ungroup_is_exact_on_both_paths(data: bytes, group: int, offset: int) -> None:
    grouped = bytes(bytegroup.group_bytes(memoryview(data), group))
    assert grouped == reference_group(data, group)
    whole = len(data) // group * group
    for ungroup in (bytegroup._ungroup_slices, bytegroup._ungroup_numpy):
        out = bytearray(b"\xaa" * (offset + len(data) + 5))
        if whole and group > 1:
            ungroup(grouped, whole, out, offset, group)
        else:
            out[offset : offset + whole] = grouped[:whole]
        out[offset + whole : offset + len(data)] = grouped[whole:]
        assert bytes(out[offset : offset + len(data)]) == data
        assert out[:offset] == b"\xaa" * offset and out[offset + len(data) :] == b"\xaa" * 5


def test_public_ungroup_matches_reference() -> None:
    data = bytes(range(256)) * 41 + b"xyz"
    for group in (1, 2, 4, 8):
        out = bytearray(len(data))
        bytegroup.ungroup_bytes(bytes(bytegroup.group_bytes(memoryview(data), group)), len(data), out, 0, group)
        assert bytes(out) == data
