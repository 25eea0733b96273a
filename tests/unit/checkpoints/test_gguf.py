"""GGUF files written by llama.cpp's gguf package: byte-identical round trips, quantized types, bad files refused."""

from __future__ import annotations

import base64
import io
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from git_theta.checkpoints.base import CheckpointError
from git_theta.checkpoints.detect import detect
from git_theta.checkpoints.gguf import BLOCKS, GgufCheckpoint
from git_theta.metadata import CheckpointMetadata, MetadataError
from tests.helpers import finish_gguf
from tests.unit.support import assert_one_line_error, clean_bytes, filter_context, round_trip, smudge_bytes

gguf = pytest.importorskip("gguf", reason="the gguf package writes the test files: pip install -e '.[test]'")
from gguf.quants import quantize  # noqa: E402

LABEL = "models/bad.gguf"
Q = gguf.GGMLQuantizationType


def write_gguf(path: Path, tensors: dict[str, Any], alignment: int | None = None, big: bool = False) -> bytes:
    """A GGUF file written by gguf.GGUFWriter: a few metadata values and ``tensors`` (array, or (bytes, type))."""
    endian = gguf.GGUFEndian.BIG if big else gguf.GGUFEndian.LITTLE
    writer = gguf.GGUFWriter(str(path), "llama", endianess=endian)
    writer.add_name("tiny")
    writer.add_block_count(2)
    writer.add_context_length(128)
    writer.add_token_list(["<s>", "hello", "wörld"])
    writer.add_token_scores([0.0, -1.5, -2.25])
    writer.add_array("test.nested", [[1, 2], [3]])
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    for name, value in tensors.items():
        if isinstance(value, tuple):
            writer.add_tensor(name, value[0], raw_dtype=value[1])
        else:
            writer.add_tensor(name, value)
    return finish_gguf(writer, path)


def model(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((4, 64), dtype=np.float32)
    return {
        "token_embd.weight": rng.standard_normal((6, 8), dtype=np.float32),
        "blk.0.attn_norm.weight": rng.standard_normal(8).astype(np.float16),
        "blk.0.ffn_up.weight": (quantize(weights, Q.Q8_0), Q.Q8_0),
        "blk.0.ffn_down.weight": (quantize(weights, Q.Q4_0), Q.Q4_0),
        "blk.1.bf16.weight": (rng.standard_normal((3, 5)).astype(ml_dtypes.bfloat16).view(np.uint16), Q.BF16),
        "blk.1.ids": np.arange(10, dtype=np.int32),
        "blk.1.f64": np.linspace(0, 1, 7),
        "blk.1.i8": np.arange(-3, 3, dtype=np.int8).reshape(2, 3),
    }


def test_round_trip_is_byte_identical(tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "m.gguf", model())
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "m.gguf", context)
    assert rebuilt == data
    assert metadata.checkpoint_type == "gguf"
    assert {name: (entry.dtype, entry.shape) for name, entry in metadata.tensors.items()} == {
        "token_embd.weight": ("F32", (6, 8)),
        "blk.0.attn_norm.weight": ("F16", (8,)),
        "blk.0.ffn_up.weight": ("U8", (4, 68)),  # 64 elements per row: 2 Q8_0 blocks of 34 bytes
        "blk.0.ffn_down.weight": ("U8", (4, 36)),
        "blk.1.bf16.weight": ("BF16", (3, 5)),
        "blk.1.ids": ("I32", (10,)),
        "blk.1.f64": ("F64", (7,)),
        "blk.1.i8": ("I8", (2, 3)),
    }
    assert metadata.format["quantized"] == {"blk.0.ffn_up.weight": "Q8_0", "blk.0.ffn_down.weight": "Q4_0"}


def test_tensor_bytes_are_the_arrays_bytes(tmp_path: Path) -> None:
    tensors = model(2)
    data = write_gguf(tmp_path / "m.gguf", tensors)
    _, read = GgufCheckpoint().read(io.BytesIO(data), "m.gguf")
    got = {tensor.spec.name: bytes(tensor.data) for tensor in read}
    assert got["token_embd.weight"] == tensors["token_embd.weight"].tobytes()
    assert got["blk.0.ffn_up.weight"] == tensors["blk.0.ffn_up.weight"][0].tobytes()
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    for tensor in reader.tensors:
        assert got[tensor.name] == tensor.data.tobytes()


@pytest.mark.parametrize("alignment", [8, 64, 4096])
def test_custom_alignment(tmp_path: Path, alignment: int) -> None:
    data = write_gguf(tmp_path / "m.gguf", model(), alignment=alignment)
    with filter_context() as context:
        assert round_trip(data, "m.gguf", context)[1] == data


def test_no_tensors_and_empty_tensors(tmp_path: Path) -> None:
    for name, tensors in {
        "none": {},
        "empty": {"e": np.zeros((0, 4), np.float32), "f": np.ones(3, np.float32)},
    }.items():
        data = write_gguf(tmp_path / f"{name}.gguf", tensors)
        with filter_context() as context:
            assert round_trip(data, "m.gguf", context)[1] == data


def test_block_table_agrees_with_the_gguf_package() -> None:
    for type_id, (name, block, size) in BLOCKS.items():
        if type_id in {t.value for t in Q}:
            assert (Q(type_id).name, *gguf.GGML_QUANT_SIZES[Q(type_id)]) == (name, block, size)


def test_detection(tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "m.gguf", model())
    assert detect("model.bin", data[:4096]) is GgufCheckpoint
    assert not GgufCheckpoint.sniff(b"GGML" + bytes(10))


def test_streams_tensor_by_tensor(tmp_path: Path) -> None:
    tensors = {f"t{i}": np.full(100_000, i, np.float32) for i in range(4)}
    stream = io.BytesIO(write_gguf(tmp_path / "m.gguf", tensors))
    _, read = GgufCheckpoint().read(stream, "m.gguf")
    next(read)
    assert stream.tell() < 2 * 400_000


# --- bad input -----------------------------------------------------------------------------------------------------


def _clean_error(data: bytes) -> pytest.ExceptionInfo:
    with filter_context() as context, pytest.raises(CheckpointError) as excinfo:
        clean_bytes(data, LABEL, context)
    assert_one_line_error(excinfo, LABEL)
    return excinfo


@pytest.mark.parametrize("fraction", [0.001, 0.05, 0.2, 0.5, 0.8, -30])
def test_truncated_file(tmp_path: Path, fraction: float) -> None:
    data = write_gguf(tmp_path / "m.gguf", model())
    cut = fraction if fraction < 0 else max(5, int(len(data) * fraction))  # -30: inside the last tensor
    excinfo = _clean_error(data[:cut])
    assert "truncated" in str(excinfo.value)


def header(version: int = 3, tensors: int = 0, kvs: bytes = b"", kv_count: int = 0, infos: bytes = b"") -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kv_count) + kvs + infos


def gstr(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


def info(name: str, dims: list[int], ggml_type: int, offset: int) -> bytes:
    return (
        gstr(name)
        + struct.pack("<I", len(dims))
        + struct.pack(f"<{len(dims)}Q", *dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


def _padded(data: bytes, alignment: int = 32) -> bytes:
    return data + bytes(-len(data) % alignment)


CORRUPT = {
    "version 1": header(version=1),
    "unknown version": header(version=77),
    "big-endian": b"GGUF" + struct.pack(">IQQ", 3, 0, 0),
    "unknown value type": header(kvs=gstr("k") + struct.pack("<I", 99), kv_count=1),
    "alignment not a uint32": header(kvs=gstr("general.alignment") + struct.pack("<IQ", 10, 32), kv_count=1),
    "alignment not a power of two": header(kvs=gstr("general.alignment") + struct.pack("<II", 4, 24), kv_count=1),
    "huge alignment": header(kvs=gstr("general.alignment") + struct.pack("<II", 4, 1 << 31), kv_count=1),
    "unknown GGML type": _padded(header(tensors=1, infos=info("t", [4], 99, 0))) + bytes(16),
    "too many dimensions": header(tensors=1, infos=info("t", [1] * 5, 0, 0)),
    "partial quantized block": _padded(header(tensors=1, infos=info("t", [33], 8, 0))) + bytes(64),
    "overlapping tensors": _padded(header(tensors=2, infos=info("a", [8], 0, 0) + info("b", [8], 0, 16))) + bytes(64),
    "tensor far beyond the previous": _padded(header(tensors=1, infos=info("a", [1], 0, 64))) + bytes(68),
    "trailing garbage": _padded(header(tensors=1, infos=info("a", [8], 0, 0))) + bytes(32) + b"x" * 40,
    "not GGUF": b"GGUX" + bytes(40),
    "2^64 elements": _padded(header(tensors=1, infos=info("t", [1 << 32, 1 << 32], 0, 0))) + bytes(64),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_file(case: str) -> None:
    _clean_error(CORRUPT[case])


def test_big_endian_file_from_the_writer_is_refused_clearly(tmp_path: Path) -> None:
    excinfo = _clean_error(write_gguf(tmp_path / "m.gguf", {"a": np.ones(2, np.float32)}, big=True))
    assert "big-endian" in str(excinfo.value)


@pytest.mark.parametrize(
    "claim",
    [
        header(kvs=gstr("k") + struct.pack("<IQ", 8, 1 << 62), kv_count=1),  # a string of 2**62 bytes
        header(kvs=gstr("k") + struct.pack("<IIQ", 9, 12, 1 << 61), kv_count=1),  # an array of 2**61 float64
        header(kv_count=1 << 63),
        struct.pack("<4sIQQQ", b"GGUF", 3, 0, 1, 1 << 40),  # a key of a terabyte
        _padded(header(tensors=1, infos=info("t", [1 << 40, 1 << 20], 0, 0))),
    ],
    ids=["string", "array", "kv count", "key", "tensor"],
)
def test_huge_declared_sizes_fail_without_allocating_them(claim: bytes) -> None:
    _clean_error(claim + bytes(64))


def test_smudge_refuses_a_header_that_does_not_match(tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "m.gguf", model())
    with filter_context() as context:
        metadata = CheckpointMetadata.loads(clean_bytes(data, "m.gguf", context))
        renamed = {("x" if name == "blk.1.ids" else name): e for name, e in metadata.tensors.items()}
        with pytest.raises(MetadataError):
            smudge_bytes(CheckpointMetadata("gguf", renamed, metadata.format).dumps(), "m.gguf", context)
        bad_gaps = {**metadata.format, "gaps": metadata.format["gaps"][1:]}
        with pytest.raises(MetadataError):
            smudge_bytes(CheckpointMetadata("gguf", metadata.tensors, bad_gaps).dumps(), "m.gguf", context)
        cut = {"$base64": base64.b64encode(base64.b64decode(metadata.format["header"]["$base64"])[:-9]).decode()}
        with pytest.raises(MetadataError):
            smudge_bytes(
                CheckpointMetadata("gguf", metadata.tensors, {**metadata.format, "header": cut}).dumps(),
                "m.gguf",
                context,
            )


def test_metadata_with_the_header_as_base64_text_still_checks_out(tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "m.gguf", model())
    with filter_context() as context:
        metadata = CheckpointMetadata.loads(clean_bytes(data, "m.gguf", context))
        older = {**metadata.format, "header": metadata.format["header"]["$base64"]}  # before headers were bytes
        assert smudge_bytes(CheckpointMetadata("gguf", metadata.tensors, older).dumps(), "m.gguf", context) == data


# --- merges --------------------------------------------------------------------------------------------------------


def test_rebuild_format_for_a_merge_that_adds_removes_and_reshapes(tmp_path: Path) -> None:
    tensors = model(4)
    data = write_gguf(tmp_path / "m.gguf", tensors)
    format_data, read = GgufCheckpoint().read(io.BytesIO(data), "m.gguf")
    old = {tensor.spec.name: (tensor.spec, bytes(tensor.data)) for tensor in read}
    merged = {name: value for name, value in old.items() if name != "blk.1.f64"}
    added = np.arange(12, dtype=np.float32).reshape(3, 4)
    merged["new.weight"] = (old["token_embd.weight"][0]._replace(name="new.weight", shape=(3, 4)), added.tobytes())
    wider = np.ones((2, 5), np.int8)
    merged["blk.1.i8"] = (old["blk.1.i8"][0]._replace(shape=(2, 5)), wider.tobytes())
    specs = [spec for spec, _ in merged.values()]

    new_format, order = GgufCheckpoint.rebuild_format(format_data, [spec for spec, _ in old.values()], specs)
    out = io.BytesIO()
    GgufCheckpoint().write(new_format, order, [merged[spec.name][1] for spec in order], out)
    (tmp_path / "merged.gguf").write_bytes(out.getvalue())

    reader = gguf.GGUFReader(tmp_path / "merged.gguf")
    assert {t.name: t.data.tobytes() for t in reader.tensors} == {name: data for name, (_, data) in merged.items()}
    assert reader.get_field("general.name").contents() == "tiny"
    assert reader.get_field("tokenizer.ggml.tokens").contents() == ["<s>", "hello", "wörld"]
    quant = {t.name: t.tensor_type for t in reader.tensors}
    assert quant["blk.0.ffn_up.weight"] == Q.Q8_0 and quant["new.weight"] == Q.F32
    with filter_context() as context:  # and the rebuilt file is an ordinary, exactly round-tripping GGUF file
        assert round_trip(out.getvalue(), "m.gguf", context)[1] == out.getvalue()


def test_rebuild_format_refuses_what_gguf_cannot_hold(tmp_path: Path) -> None:
    format_data, read = GgufCheckpoint().read(io.BytesIO(write_gguf(tmp_path / "m.gguf", model())), "m.gguf")
    specs = [tensor.spec for tensor in read]
    odd = [spec._replace(shape=(4, 67)) if spec.name == "blk.0.ffn_up.weight" else spec for spec in specs]
    with pytest.raises(CheckpointError, match="whole Q8_0 blocks"):
        GgufCheckpoint.rebuild_format(format_data, specs, odd)
    with pytest.raises(CheckpointError, match="no type"):
        GgufCheckpoint.rebuild_format(format_data, specs, [*specs, specs[0]._replace(name="u", dtype="U16")])
