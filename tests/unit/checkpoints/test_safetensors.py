"""safetensors through clean and smudge: byte-identical round trips, and every kind of bad file refused clearly."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from git_theta.checkpoints.base import CheckpointError
from git_theta.checkpoints.safetensors import SafetensorsCheckpoint
from git_theta.metadata import CheckpointMetadata, MetadataError
from tests.helpers import random_model, save_safetensors
from tests.needs import TORCH, needs_module
from tests.unit.support import (
    PROPERTY,
    assert_one_line_error,
    clean_bytes,
    filter_context,
    names,
    round_trip,
    smudge_bytes,
)
from tests.unit.torch_support import SAFETENSORS_DTYPES, TORCH_DTYPES, tensor_bytes, torch_tensors

torch = needs_module("torch", TORCH)
safetensors_torch = needs_module("safetensors.torch", TORCH)

LABEL = "models/bad.safetensors"


def build(header: dict | bytes, data: bytes = b"") -> bytes:
    """A safetensors file with exactly this header (dict: compact JSON, padded to 8 like the library does)."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


def f32(name_offsets: dict[str, tuple[list[int], list[int]]]) -> dict:
    return {
        name: {"dtype": "F32", "shape": shape, "data_offsets": offsets}
        for name, (shape, offsets) in name_offsets.items()
    }


@PROPERTY
@given(
    tensors=st.dictionaries(names, torch_tensors(SAFETENSORS_DTYPES), max_size=5),
    user_metadata=st.none() | st.dictionaries(st.text(max_size=6), st.text(max_size=12), max_size=3),
)
def test_round_trip_is_byte_identical(tensors: dict[str, torch.Tensor], user_metadata: dict | None) -> None:
    assume(tensors or user_metadata is None)  # safetensors itself writes a broken header for ({}, metadata={...})
    data = safetensors_torch.save(tensors, metadata=user_metadata)
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "model.safetensors", context)
    assert rebuilt == data
    assert metadata.checkpoint_type == "safetensors"
    assert set(metadata.tensors) == set(tensors)
    for name, tensor in tensors.items():
        entry = metadata.tensors[name]
        assert TORCH_DTYPES[entry.dtype] == tensor.dtype
        assert entry.shape == tuple(tensor.shape)
        assert entry.nbytes == len(tensor_bytes(tensor))


@pytest.mark.parametrize("dtype", SAFETENSORS_DTYPES)
def test_every_dtype_scalar_empty_1d_3d(dtype: str) -> None:
    generator = torch.Generator().manual_seed(7)
    tensors = {}
    for name, shape in {"scalar": (), "empty": (0,), "empty3d": (2, 0, 3), "vector": (300,), "cube": (2, 3, 4)}.items():
        count = int(torch.tensor(shape).prod()) if shape else 1
        itemsize = torch.empty((), dtype=TORCH_DTYPES[dtype]).element_size()
        raw = torch.randint(0, 256, (count * itemsize,), dtype=torch.uint8, generator=generator)
        if dtype == "BOOL":
            raw &= 1
        tensors[name] = raw.view(TORCH_DTYPES[dtype]).reshape(shape)
    data = safetensors_torch.save(tensors, metadata={"format": "pt"})
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "m.safetensors", context)
    assert rebuilt == data
    assert {name: entry.dtype for name, entry in metadata.tensors.items()} == dict.fromkeys(tensors, dtype)
    if dtype == "F8_E8M0":
        return  # safetensors 0.8 writes F8_E8M0 but cannot load it back
    loaded = safetensors_torch.load(rebuilt)
    for name, tensor in tensors.items():
        assert tensor_bytes(loaded[name]) == tensor_bytes(tensor)


def test_real_files_written_by_the_library(tmp_path: Path) -> None:
    torch_file, numpy_file = tmp_path / "t.safetensors", tmp_path / "n.safetensors"
    safetensors_torch.save_file(
        {"w": torch.randn(16, 8), "b": torch.zeros(8, dtype=torch.bfloat16)}, str(torch_file), metadata={"k": "v"}
    )
    save_safetensors(numpy_file, random_model(seed=3), metadata={"format": "np", "note": "äöü"})
    with filter_context() as context:
        for path in (torch_file, numpy_file):
            data = path.read_bytes()
            assert round_trip(data, path.name, context)[1] == data


def test_unusual_but_valid_header_bytes_are_kept() -> None:
    # Key order, whitespace, padding and __metadata__ position are not canonical: only the original bytes round trip.
    header = (
        b'{ "b": {"shape": [2], "dtype": "F32", "data_offsets": [8, 16]},\n'
        b'  "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},\n'
        b'  "__metadata__": {"z": "1", "a": "\\u00e9"} }          '
    )
    data = build(header, struct.pack("<4f", 1.0, 2.0, 3.0, 4.0))
    assert safetensors_torch.load(data)["b"].tolist() == [3.0, 4.0]
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "m.safetensors", context)
    assert rebuilt == data
    assert list(metadata.tensors) == ["a", "b"]  # data order, not header order


def test_zero_size_tensor_at_the_offset_of_the_next_tensor() -> None:
    header = {
        "b": {"dtype": "I8", "shape": [3], "data_offsets": [0, 3]},
        "z": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
    }
    data = build(header, b"\x01\x02\x03")
    assert safetensors_torch.load(data)["b"].tolist() == [1, 2, 3]  # the library accepts this file
    with filter_context() as context:
        assert round_trip(data, "m.safetensors", context)[1] == data


# --- bad input -----------------------------------------------------------------------------------------------------


def _real_file() -> bytes:
    return safetensors_torch.save({"a": torch.arange(6, dtype=torch.float32), "b": torch.ones(4, dtype=torch.int16)})


def _clean_error(data: bytes) -> pytest.ExceptionInfo:
    with filter_context() as context, pytest.raises(CheckpointError) as excinfo:
        clean_bytes(data, LABEL, context)
    assert_one_line_error(excinfo, LABEL)
    return excinfo


@pytest.mark.parametrize(
    "where",
    ["length", "end of length", "header", "first tensor", "last byte"],
)
def test_truncated_file(where: str) -> None:
    data = _real_file()
    (length,) = struct.unpack("<Q", data[:8])
    cut = {
        "length": 3,
        "end of length": 8,
        "header": 8 + length // 2,
        "first tensor": 8 + length + 5,
        "last byte": len(data) - 1,
    }[where]
    excinfo = _clean_error(data[:cut])
    assert "truncated" in str(excinfo.value)


HEADER_LIES = {
    "size does not match shape": build(f32({"a": ([2], [0, 4])}), bytes(4)),
    "overlapping offsets": build(f32({"a": ([2], [0, 8]), "b": ([2], [4, 12])}), bytes(12)),
    "gap between tensors": build(f32({"a": ([1], [0, 4]), "b": ([1], [8, 12])}), bytes(12)),
    "data does not start at 0": build(f32({"a": ([1], [4, 8])}), bytes(8)),
    "end before begin": build(f32({"a": ([0], [4, 0])}), bytes(4)),
    "offsets of wrong arity": build(f32({"a": ([1], [0])}), bytes(4)),
    "negative dimension": build(f32({"a": ([-1], [0, 0])})),
    "shape not a list": build({"a": {"dtype": "F32", "shape": "ab", "data_offsets": [0, 8]}}, bytes(8)),
    "entry not an object": build({"a": 5}),
    "missing dtype": build({"a": {"shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
    "unknown dtype": build({"a": {"dtype": "F12", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
    "unsupported fnuz dtype": build({"a": {"dtype": "F8_E4M3FNUZ", "shape": [1], "data_offsets": [0, 1]}}, bytes(1)),
    "non-JSON header": build(b"{not json}      ", bytes(4)),
    "JSON array header": build(b"[1, 2]  "),
    "header not UTF-8": build(b'{"\xff": 1}     '),
    "header length too large": struct.pack("<Q", 1 << 40) + b'{"a": 1}' + bytes(16),
    "trailing garbage": _real_file() + b"garbage",
    "boolean dimension": build(f32({"a": ([True], [0, 4])}), bytes(4)),
    "boolean offsets": build(f32({"a": ([1], [False, 4])}), bytes(4)),
    "float dimension": build(f32({"a": ([1.0], [0, 4])}), bytes(4)),
    "2^62 elements": build(f32({"a": ([1 << 62], [0, 1 << 64])})),
    "product beyond any real size": build(f32({"a": ([1 << 30, 1 << 30], [0, 1 << 62])})),
    "2 GiB in a few bytes": build(f32({"a": ([1 << 29], [0, 1 << 31])})),
    "header nested too deep": build(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "integer of 5000 digits": build(b'{"a": ' + b"9" * 5000 + b"}"),
}


@pytest.mark.parametrize("case", list(HEADER_LIES))
def test_header_lies_and_garbage(case: str) -> None:
    _clean_error(HEADER_LIES[case])


@pytest.mark.parametrize("dtype", [["F32"], {"F32": 1}])
def test_non_string_dtype(dtype: object) -> None:
    _clean_error(build({"a": {"dtype": dtype, "shape": [1], "data_offsets": [0, 4]}}, bytes(4)))


def test_smudge_refuses_a_header_that_does_not_match_the_tensor_list() -> None:
    with filter_context() as context:
        metadata = CheckpointMetadata.loads(clean_bytes(_real_file(), "m.safetensors", context))
        metadata.tensors = {("renamed" if name == "a" else name): entry for name, entry in metadata.tensors.items()}
        with pytest.raises(MetadataError):
            smudge_bytes(metadata.dumps(), "m.safetensors", context)


def test_sniff() -> None:
    assert SafetensorsCheckpoint.sniff(_real_file()[:4096])
    assert not SafetensorsCheckpoint.sniff(b"")
    assert not SafetensorsCheckpoint.sniff(struct.pack("<Q", 10) + b"[")
    assert not SafetensorsCheckpoint.sniff(struct.pack("<Q", 1 << 40) + b"{}")
    assert not SafetensorsCheckpoint.sniff(b"PK\x03\x04" + bytes(40))
