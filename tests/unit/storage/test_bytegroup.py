"""Byte grouping round trips, through both ungrouping paths (numpy for large tensors, slices for small ones), with
and without the sign bit moved out of the exponent's byte."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from git_theta.storage import bytegroup


def reference_group(block: bytes, group: int) -> bytes:
    whole = len(block) // group * group
    return np.frombuffer(block[:whole], dtype=np.uint8).reshape(-1, group).T.tobytes() + block[whole:]


def reference_signbit(block: bytes, group: int) -> list[bytes]:
    """The streams with the sign bit moved, computed bit by bit from the definition in bytegroup's docstring."""
    whole = len(block) // group * group
    columns = [bytearray(column) for column in np.frombuffer(block[:whole], np.uint8).reshape(-1, group).T]
    hi, lo = columns[-1], columns[-2]
    top = bytes(((h << 1) | (lo_byte >> 7)) & 0xFF for h, lo_byte in zip(hi, lo, strict=True))
    below = bytes((lo_byte & 0x7F) | (h & 0x80) for h, lo_byte in zip(hi, lo, strict=True))
    return [bytes(column) for column in columns[:-2]] + [below, top]


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), group=st.sampled_from([1, 2, 3, 4, 8, 16]), offset=st.integers(0, 37))
def test_group_then_ungroup_is_exact_on_both_paths(data: bytes, group: int, offset: int) -> None:
    grouped = bytes(bytegroup.group_bytes(memoryview(data), group))
    assert grouped == reference_group(data, group)
    *streams, tail = bytegroup.split_bytes(memoryview(data), group)
    assert b"".join(streams) + bytes(tail) == grouped
    check_both_paths(data, streams, tail, group, offset, signbit=False)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), group=st.sampled_from(bytegroup.SIGNBIT_WIDTHS), offset=st.integers(0, 37))
def test_sign_bit_move_is_exact_on_both_paths(data: bytes, group: int, offset: int) -> None:
    *streams, tail = bytegroup.split_bytes(memoryview(data), group, signbit=True)
    if len(data) >= group:
        assert [bytes(stream) for stream in streams] == reference_signbit(data, group)
    check_both_paths(data, streams, tail, group, offset, signbit=True)


def check_both_paths(data: bytes, streams: list, tail: memoryview, group: int, offset: int, signbit: bool) -> None:
    for use_numpy in (False, True):
        out = bytearray(b"\xaa" * (offset + len(data) + 5))
        bytegroup.interleave_with(use_numpy, streams, tail, out, offset, group, signbit)
        assert bytes(out[offset : offset + len(data)]) == data
        assert out[:offset] == b"\xaa" * offset and out[offset + len(data) :] == b"\xaa" * 5


def test_float_exponent_fills_the_top_stream() -> None:
    values = np.array([1.0, -1.0, 2.0, -0.5, 3.0e-38], dtype="<f4")
    *streams, _ = bytegroup.split_bytes(memoryview(values.tobytes()), 4, signbit=True)
    exponents = (values.view("<u4") >> 23) & 0xFF
    assert list(streams[3]) == list(exponents)
    assert [byte >> 7 for byte in streams[2]] == [0, 1, 0, 1, 0]  # the sign, where the exponent's low bit was


def test_sign_bit_only_moves_in_floats_two_or_four_bytes_wide() -> None:
    for group in (1, 3, 8):
        with pytest.raises(ValueError):
            bytegroup.split_bytes(memoryview(bytes(16)), group, signbit=True)


def test_public_ungroup_matches_reference() -> None:
    data = bytes(range(256)) * 41 + b"xyz"
    for group in (1, 2, 4, 8):
        out = bytearray(len(data))
        bytegroup.ungroup_bytes(bytes(bytegroup.group_bytes(memoryview(data), group)), len(data), out, 0, group)
        assert bytes(out) == data


def test_tensor_buffer_is_writable_and_sized() -> None:
    buffer = bytegroup.tensor_buffer(4096)
    buffer[:3] = b"abc"
    assert len(buffer) == 4096 and bytes(buffer[:3]) == b"abc"
