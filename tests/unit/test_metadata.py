"""The metadata file: golden files pin its exact bytes; loads() and dumps() are inverse; bad files are refused."""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from git_theta.dtypes import ITEMSIZE, nbytes
from git_theta.metadata import VERSION, CheckpointMetadata, MetadataError, TensorEntry, is_metadata
from tests.needs import TORCH, needs_module
from tests.unit.support import PROPERTY, clean_bytes, filter_context, smudge_bytes

GOLDEN = Path(__file__).parent.parent / "golden"
REGENERATE = "UPDATE_GOLDEN=1 python -m pytest tests/unit -k golden -p no:xdist"


def check_golden(name: str, actual: bytes) -> None:
    """Compare ``actual`` with ``tests/golden/<name>`` byte for byte (or rewrite it when UPDATE_GOLDEN=1)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual)
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; create it with: {REGENERATE}")
    expected = path.read_bytes()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.decode(errors="replace").splitlines(keepends=True),
                actual.decode(errors="replace").splitlines(keepends=True),
                f"golden/{name}",
                "now",
            )
        )
        pytest.fail(
            f"the output no longer matches tests/golden/{name}:\n{diff}\n"
            "Existing repositories hold files in the old format. If the change is intentional, bump "
            "git_theta.metadata.VERSION when old files can no longer be read the same way, update "
            f"docs/metadata-format.md, and regenerate the golden files with:\n    {REGENERATE}"
        )


# --- deterministic checkpoints, independent of library versions ------------------------------------------------------


def _noise(size: int) -> bytes:
    """Incompressible but reproducible bytes (stored raw, so the golden does not depend on the zstd version)."""
    return b"".join(hashlib.sha256(b"git-theta golden %d" % i).digest() for i in range(size // 32))


def golden_safetensors() -> bytes:
    """A small safetensors file written byte by byte; every tensor is stored raw."""
    tensors = [
        ("embed.weight", "F32", [2, 4], np.arange(8, dtype="<f4").tobytes()),
        ("embed.bias", "F16", [4], np.array([0.5, -1, 2, 65504], dtype="<f2").tobytes()),
        ("norm.scale", "BF16", [3], struct.pack("<3H", 0x3F80, 0xBF80, 0x7FC1)),  # 1.0, -1.0, a NaN with payload
        ("step", "I64", [], struct.pack("<q", 1000)),
        ("mask", "BOOL", [2, 1, 2], bytes([1, 0, 0, 1])),
        ("tokens", "U8", [5], b"hello"),
        ("fp8", "F8_E4M3", [2], bytes([0x38, 0xB8])),
        ("empty", "I32", [0, 3], b""),
        ("größe", "F32", [64], _noise(256)),
    ]
    header: dict = {"__metadata__": {"format": "pt", "source": "git-theta golden"}}
    offset, data = 0, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    header_bytes = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    return struct.pack("<Q", len(header_bytes)) + header_bytes + data


def golden_torch() -> bytes:
    torch = needs_module("torch", TORCH)
    state = {
        "model": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(3, dtype=torch.float16)},
        "optim": {"step": 7, "lr": 0.001, "name": "sgd", "flags": [True, None], "betas": (0.9, 0.99)},
        3: [torch.tensor([1, -2], dtype=torch.int8)],
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def golden_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, a=np.arange(5, dtype=np.int16), b=np.ones((2, 2)), c=np.array(np.pi))
    return buffer.getvalue()


def golden_empty_safetensors() -> bytes:
    return struct.pack("<Q", 8) + b"{}      "


GOLDEN_CASES = {
    "safetensors-packed.metadata.json": (golden_safetensors, "model.safetensors"),
    "torch.metadata.json": (golden_torch, "model.pt"),
    "npz.metadata.json": (golden_npz, "arrays.npz"),
    "safetensors-empty.metadata.json": (golden_empty_safetensors, "empty.safetensors"),
}


@pytest.mark.parametrize("name", list(GOLDEN_CASES))
def test_golden_metadata(name: str) -> None:
    make, path = GOLDEN_CASES[name]
    checkpoint = make()
    with filter_context() as context:
        metadata = clean_bytes(checkpoint, path, context)
        check_golden(name, metadata)
        assert CheckpointMetadata.loads(metadata).dumps() == metadata
        rebuilt = smudge_bytes(metadata, path, context)
    if path.endswith(".safetensors"):
        assert rebuilt == checkpoint
    else:
        with filter_context() as context:
            assert clean_bytes(rebuilt, path, context) == metadata


def test_golden_safetensors_is_a_valid_file() -> None:
    loaded = needs_module("safetensors.torch", TORCH).load(golden_safetensors())
    assert loaded["step"].item() == 1000 and loaded["tokens"].tolist() == list(b"hello")


#: Metadata that earlier versions wrote for a checkpoint that is now written otherwise: it must still read back.
WRITTEN_BEFORE = {"safetensors.metadata.json": (golden_safetensors, "model.safetensors")}  # before packs


@pytest.mark.parametrize("name", list(WRITTEN_BEFORE))
def test_metadata_written_before_still_checks_out_byte_for_byte(name: str) -> None:
    make, path = WRITTEN_BEFORE[name]
    metadata = (GOLDEN / name).read_bytes()
    parsed = CheckpointMetadata.loads(metadata)
    assert parsed.dumps() == metadata
    assert all(entry.packed is None for entry in parsed.tensors.values())
    with filter_context() as context:
        for entry, (raw, itemsize) in zip(parsed.tensors.values(), _raw_tensors(make()), strict=True):
            assert context.encoder.store_dense(context.store, memoryview(raw), entry.hash, itemsize) == (
                entry.oid,
                entry.stored,
            )  # the objects it names, as every version writes them
        assert smudge_bytes(metadata, path, context) == make()


def _raw_tensors(checkpoint: bytes) -> list[tuple[bytes, int]]:
    """The bytes and element size of each tensor of a safetensors file, in the file's order."""
    (length,) = struct.unpack("<Q", checkpoint[:8])
    header = json.loads(checkpoint[8 : 8 + length])
    header.pop("__metadata__", None)
    data = checkpoint[8 + length :]
    return [(data[slice(*info["data_offsets"])], ITEMSIZE[info["dtype"]]) for info in header.values()]


def test_golden_files_are_all_checked() -> None:
    on_disk = {path.name for path in GOLDEN.glob("*.metadata.json")}
    checked = set(GOLDEN_CASES) | set(WRITTEN_BEFORE)
    assert on_disk <= checked, f"stale golden files: {sorted(on_disk - checked)}"


# --- loads and dumps -------------------------------------------------------------------------------------------------

hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)


@st.composite
def entries(draw: st.DrawFn) -> TensorEntry:
    dtype = draw(st.sampled_from(sorted(ITEMSIZE)))
    shape = tuple(draw(st.lists(st.integers(0, 1000), max_size=4)))
    return TensorEntry(
        dtype, shape, nbytes(dtype, shape), "sha256:" + draw(hex64), draw(hex64), draw(st.integers(0, 2**40))
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@PROPERTY
@given(
    checkpoint_type=st.text(min_size=1, max_size=12),
    tensors=st.dictionaries(st.text(max_size=12), entries(), max_size=6),
    format_data=st.dictionaries(st.text(max_size=5), json_values, max_size=4),
)
def test_dumps_loads_round_trip(checkpoint_type: str, tensors: dict, format_data: dict) -> None:
    metadata = CheckpointMetadata(checkpoint_type, tensors, format_data)
    text = metadata.dumps()
    assert is_metadata(text)
    back = CheckpointMetadata.loads(text)
    assert back == metadata
    assert list(back.tensors) == list(tensors)  # the checkpoint's order, not sorted
    assert back.dumps() == text
    lines = text.decode().splitlines()
    assert len(lines) == (7 + len(tensors) if tensors else 6)  # one line per tensor, so git diff names what changed
    assert metadata.total_bytes == sum(entry.nbytes for entry in tensors.values())


def _document(**changes: object) -> dict:
    entry = {"dtype": "F32", "shape": [2], "nbytes": 8, "hash": "sha256:" + "a" * 64, "oid": "b" * 64, "stored": 120}
    doc = {"git_theta_metadata": VERSION, "checkpoint_type": "safetensors", "tensors": {"w": entry}, "format": {}}
    for key, value in changes.items():
        if key in entry:
            entry[key] = value
        elif value is None:
            doc.pop(key)
        else:
            doc[key] = value
    return doc


def test_valid_document_loads() -> None:
    metadata = CheckpointMetadata.loads(json.dumps(_document()).encode())
    assert metadata.tensors["w"].shape == (2,)


MALFORMED = {
    "empty": b"",
    "not UTF-8": b"\xff\xfe{}",
    "not JSON": b'{\n  "git_theta_metadata": 1,',
    "JSON array": b"[1]",
    "no version": json.dumps(_document(git_theta_metadata=None)).encode(),
    "version 2": json.dumps(_document(git_theta_metadata=2)).encode(),
    "version as string": json.dumps(_document(git_theta_metadata="1")).encode(),
    "no tensors": json.dumps(_document(tensors=None)).encode(),
    "tensors a list": json.dumps(_document(tensors=[])).encode(),
    "format a list": json.dumps(_document(format=[])).encode(),
    "entry a string": json.dumps(_document(tensors={"w": "F32"})).encode(),
    "entry without oid": json.dumps(_document(tensors={"w": {"dtype": "F32", "shape": [], "nbytes": 4}})).encode(),
    "shape not numbers": json.dumps(_document(shape=["a"])).encode(),
    "nbytes mismatch": json.dumps(_document(nbytes=9)).encode(),
    "hash without prefix": json.dumps(_document(hash="a" * 64)).encode(),
    "hash too short": json.dumps(_document(hash="sha256:abc")).encode(),
    "oid upper case": json.dumps(_document(oid="B" * 64)).encode(),
    "oid not hex": json.dumps(_document(oid="g" * 64)).encode(),
    "version true": json.dumps(_document(git_theta_metadata=True)).encode(),
    "no checkpoint type": json.dumps(_document(checkpoint_type=None)).encode(),
    "shape [true]": json.dumps(_document(shape=[True], nbytes=4)).encode(),
    "shape a number": json.dumps(_document(shape=2)).encode(),
    "float dimension": json.dumps(_document(shape=[2.0])).encode(),
    "2^62 elements": json.dumps(_document(shape=[1 << 62], nbytes=1 << 64)).encode(),
    "nbytes a string": json.dumps(_document(nbytes="8")).encode(),
    "nbytes true": json.dumps(_document(shape=[], dtype="U8", nbytes=True)).encode(),
    "stored a float": json.dumps(_document(stored=120.5)).encode(),
    "dtype a list": json.dumps(_document(dtype=["F32"])).encode(),
    "base chain a string": json.dumps(_document(tensors={"w": {**_document()["tensors"]["w"], "base": "ab"}})).encode(),
    "nested too deep": b'{"git_theta_metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "integer of 5000 digits": b'{"git_theta_metadata": ' + b"9" * 5000 + b"}",
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_metadata(case: str) -> None:
    with pytest.raises(MetadataError) as excinfo:
        CheckpointMetadata.loads(MALFORMED[case])
    assert "\n" not in str(excinfo.value)


def test_future_version_says_to_upgrade() -> None:
    with pytest.raises(MetadataError, match="upgrade"):
        CheckpointMetadata.loads(json.dumps(_document(git_theta_metadata=VERSION + 1)).encode())


def test_unknown_dtype_is_a_metadata_error() -> None:
    with pytest.raises(MetadataError):
        CheckpointMetadata.loads(json.dumps(_document(dtype="F12", nbytes=8)).encode())


def test_negative_dimension_is_a_metadata_error() -> None:
    with pytest.raises(MetadataError):
        CheckpointMetadata.loads(json.dumps(_document(shape=[-1, -2], nbytes=8)).encode())


def test_is_metadata() -> None:
    assert is_metadata(CheckpointMetadata("npz").dumps())
    assert not is_metadata(b'{"git_theta_metadata": 1}')
    assert not is_metadata(b"version https://git-lfs.github.com/spec/v1\n")
    assert not is_metadata(b"")
