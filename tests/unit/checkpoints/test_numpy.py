"""NumPy .npz archives through clean and smudge: exact arrays, compression kept, pickles refused."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from git_theta.checkpoints.base import CheckpointError
from git_theta.checkpoints.numpy import NpzCheckpoint
from tests.unit.support import (
    NUMPY_DTYPES,
    PROPERTY,
    Evil,
    assert_one_line_error,
    clean_bytes,
    filter_context,
    names,
    numpy_arrays,
    round_trip,
    smudge_bytes,
)

LABEL = "data/bad.npz"


def savez(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def load(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def assert_same_arrays(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(actual) == list(expected)
    for name, array in expected.items():
        assert actual[name].dtype == array.dtype, name
        assert actual[name].shape == array.shape, name
        assert actual[name].tobytes() == array.tobytes(), name  # bit patterns, NaN payloads included


def compress_types(data: bytes) -> list[int]:
    return [info.compress_type for info in zipfile.ZipFile(io.BytesIO(data)).infolist()]


def _not_multi_dim_empty(array: np.ndarray) -> bool:
    # Excluded here, covered by test_multi_dimensional_zero_size_array (a known bug).
    return array.size > 0 or array.ndim <= 1


@PROPERTY
@given(
    arrays=st.dictionaries(names, numpy_arrays().filter(_not_multi_dim_empty), max_size=5),
    compressed=st.booleans(),
)
def test_round_trip_is_array_exact(arrays: dict[str, np.ndarray], compressed: bool) -> None:
    data = savez(arrays, compressed)
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "arrays.npz", context)
    assert metadata.checkpoint_type == "npz"
    assert metadata.format == {"compressed": compressed and bool(arrays)}
    assert_same_arrays(load(rebuilt), arrays)
    assert compress_types(rebuilt) == compress_types(data)


@pytest.mark.parametrize("dtype", sorted(NUMPY_DTYPES))
def test_every_dtype_scalar_empty_1d_3d(dtype: str) -> None:
    rng = np.random.default_rng(5)
    arrays = {}
    for name, shape in {"scalar": (), "empty": (0,), "vector": (300,), "cube": (2, 3, 4)}.items():
        size = int(np.prod(shape, dtype=np.int64)) * NUMPY_DTYPES[dtype].itemsize
        raw = rng.integers(0, 2 if dtype == "BOOL" else 256, size, dtype=np.uint8).tobytes()
        arrays[name] = np.frombuffer(raw, dtype=NUMPY_DTYPES[dtype]).reshape(shape)
    with filter_context() as context:
        metadata, rebuilt = round_trip(savez(arrays, compressed=True), "m.npz", context)
    assert {entry.dtype for entry in metadata.tensors.values()} == {dtype}
    assert_same_arrays(load(rebuilt), arrays)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (2, 0, 3)])
def test_multi_dimensional_zero_size_array(shape: tuple[int, ...]) -> None:
    arrays = {"empty": np.zeros(shape, dtype=np.float32), "other": np.arange(3)}
    with filter_context() as context:
        _, rebuilt = round_trip(savez(arrays), "m.npz", context)
    assert_same_arrays(load(rebuilt), arrays)


def test_real_files_positional_names_and_subdirectories(tmp_path: Path) -> None:
    path = tmp_path / "real.npz"
    np.savez(path, np.arange(3.0), np.eye(2, dtype=np.float16), **{"dir/inner": np.array([True, False])})
    data = path.read_bytes()
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "real.npz", context)
    assert sorted(metadata.tensors) == ["arr_0", "arr_1", "dir/inner"]
    assert_same_arrays(load(rebuilt), load(data))


def test_fortran_order_and_big_endian_keep_their_values() -> None:
    # Tensors are stored C order, little-endian (docs/metadata-format.md): values survive, the layout is normalized.
    fortran = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    big = np.arange(5, dtype=">i4")
    with filter_context() as context:
        _, rebuilt = round_trip(savez({"f": fortran, "b": big}), "m.npz", context)
    back = load(rebuilt)
    assert np.array_equal(back["f"], fortran) and back["f"].dtype == np.float32
    assert np.array_equal(back["b"], big) and back["b"].dtype == np.dtype("<i4")


def test_empty_archive() -> None:
    with filter_context() as context:
        metadata, rebuilt = round_trip(savez({}), "empty.npz", context)
    assert metadata.tensors == {}
    assert load(rebuilt) == {}


# --- bad input -----------------------------------------------------------------------------------------------------


def _clean_error(data: bytes) -> pytest.ExceptionInfo:
    with filter_context() as context, pytest.raises(CheckpointError) as excinfo:
        clean_bytes(data, LABEL, context)
    assert_one_line_error(excinfo, LABEL)
    return excinfo


def test_object_array_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = savez({"w": np.ones(2), "o": np.array([Evil(marker)], dtype=object)})
    _clean_error(data)
    assert not marker.exists(), "git-theta unpickled an object array"


def test_bfloat16_from_ml_dtypes_is_refused() -> None:
    _clean_error(savez({"a": np.ones(3, dtype=ml_dtypes.bfloat16)}))


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize("cut", [3, 30, 100, -30, -1])
def test_truncated_archive(cut: int) -> None:
    _clean_error(savez({"a": np.arange(50), "b": np.ones(3)})[:cut])


@pytest.mark.parametrize(
    "data",
    [
        _zip({"readme.txt": b"hello"}),
        _zip({"a.npy": b"not an npy file at all"}),
        _zip({"a.npy": np.lib.format.magic(1, 0) + b"\x06\x00[1,2]\n" + bytes(8)}),
        b"PK\x03\x04" + bytes(100),
    ],
    ids=["non-npy member", "garbage member", "bad npy header", "zip signature only"],
)
def test_archives_that_are_not_npz(data: bytes) -> None:
    _clean_error(data)


def _corrupt_deflate_stream() -> bytes:
    data = bytearray(savez({"a": np.arange(1000)}, compressed=True))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).infolist()[0]
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_length + extra_length + 1] ^= 0xFF
    return bytes(data)


def _unbalanced_npy_header() -> bytes:
    header = b"{'descr': '<i8', 'shape': (4,".ljust(117) + b"\n"
    return _zip({"a.npy": np.lib.format.magic(1, 0) + struct.pack("<H", len(header)) + header + bytes(32)})


def _unsupported_zip_version() -> bytes:
    data = bytearray(savez({"a": np.arange(4)}))
    central = data.find(b"PK\x01\x02")
    data[central + 6 : central + 8] = struct.pack("<H", 99)
    return bytes(data)


@pytest.mark.parametrize(
    "make", [_corrupt_deflate_stream, _unbalanced_npy_header, _unsupported_zip_version], ids=lambda f: f.__name__
)
def test_corrupt_archive_internals(make) -> None:
    _clean_error(make())


def _with_flag(flag: int) -> bytes:
    """An archive whose first member's local and central headers carry ``flag`` (1: encrypted, 0x800: UTF-8)."""
    data = bytearray(savez({"a": np.arange(4)}))
    data[6:8] = struct.pack("<H", flag)
    central = data.find(b"PK\x01\x02")
    data[central + 8 : central + 10] = struct.pack("<H", flag)
    return bytes(data)


def _name_not_utf8() -> bytes:
    data = bytearray(_with_flag(0x800))
    for at in (30, data.find(b"PK\x01\x02") + 46):
        data[at] = 0x98  # the first byte of the name "a.npy": a UTF-8 continuation byte
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [b"\x00" + savez({"a": np.arange(4)}), _with_flag(1), _name_not_utf8()],
    ids=["bytes before the archive", "encrypted member", "member name not UTF-8"],
)
def test_archives_numpy_cannot_load_are_refused(data: bytes) -> None:
    _clean_error(data)


def _npy(shape: object, data: bytes = b"", descr: str = "<f4") -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    return header.getvalue() + data  # the header starts with the magic string


@pytest.mark.parametrize(
    ("shape", "data"),
    [((True,), bytes(4)), ((1 << 62,), bytes(16)), ((1 << 40, 1 << 40), b""), ((-1,), b""), ((1 << 29,), bytes(8))],
    ids=["boolean dimension", "2^62 elements", "product beyond any real size", "negative", "2 GiB in a few bytes"],
)
def test_declared_shapes_are_checked_before_any_allocation(shape: tuple, data: bytes) -> None:
    message = str(_clean_error(_zip({"a.npy": _npy(shape, data)})).value)
    assert "invalid .npz archive" in message or "truncated" in message


def test_smudge_refuses_a_dtype_numpy_has_not() -> None:
    with filter_context() as context:
        metadata = clean_bytes(savez({"w": np.ones(2, np.float16)}), "m.npz", context)
        with pytest.raises(CheckpointError, match="BF16"):
            smudge_bytes(metadata.replace(b'"F16"', b'"BF16"'), "m.npz", context)


def test_sniff() -> None:
    assert NpzCheckpoint.sniff(savez({"a": np.ones(1)}))
    assert not NpzCheckpoint.sniff(_zip({"archive/data.pkl": b""}))
    assert not NpzCheckpoint.sniff(b"\x93NUMPY")
