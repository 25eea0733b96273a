"""GGUF (llama.cpp's format), parsed by us: the header kept verbatim, each tensor its raw bytes, streamed.

Layout (github.com/ggml-org/ggml/blob/master/docs/gguf.md, version 2 and 3, little-endian): ``GGUF``, version u32,
tensor count u64, key-value count u64, the key-value pairs, the tensor infos (name, dims innermost first, GGML type,
offset in the data section), padding to ``general.alignment`` (default 32), then the tensors at their offsets, each
padded to the alignment. Quantized tensors (Q8_0, Q4_K, ...) are stored as U8 tensors of their blocks, one row per
row of the original; the GGML type of each is recorded in the format data and in the header.
"""

from __future__ import annotations

import base64
import io
import struct
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, NamedTuple

from git_theta.checkpoints.base import (
    Checkpoint,
    CheckpointError,
    Decoded,
    Tensor,
    TensorSpec,
    read_exact,
    write_interleaved,
)
from git_theta.dtypes import nbytes, shape_error
from git_theta.metadata import MetadataError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 1 << 16
MAX_NESTING = 8
MAX_ALIGNMENT = 1 << 20

#: GGML types stored with their own dtype.
PLAIN = {0: "F32", 1: "F16", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 30: "BF16"}
#: Block-quantized GGML types: name, elements per block, bytes per block (ggml's type traits).
BLOCKS = {
    2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 29: ("IQ1_M", 256, 56),
    34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}  # fmt: skip

#: Metadata value types: fixed sizes in bytes; 8 is a string, 9 an array.
VALUE_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY, UINT32 = 8, 9, 4


class _Info(NamedTuple):
    spec: TensorSpec
    ggml_type: int
    offset: int
    size: int


class GgufCheckpoint(Checkpoint):
    """GGUF files of any GGML type; rebuilt byte for byte from the original header."""

    name = "gguf"
    extensions = (".gguf",)
    accepts_chunks = True

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head[:4] == MAGIC

    def read(self, stream: BinaryIO, label: str) -> tuple[dict[str, Any], Iterator[Tensor]]:
        header = _Recorder(stream, label)
        infos, alignment, _ = _parse_header(header)
        quantized = {info.spec.name: BLOCKS[info.ggml_type][0] for info in infos if info.ggml_type in BLOCKS}
        gaps: list[int | str] = []
        # The header (every key-value pair: a vocabulary can run to megabytes) is bytes: stored as an object.
        format_data = {"header": bytes(header.data), "quantized": quantized, "gaps": gaps}
        # ``gaps`` (the padding before each tensor, then after the last) is complete once the tensors have been read.
        return format_data, _read_tensors(stream, label, infos, alignment, len(header.data), gaps)

    def write(
        self,
        format_data: dict[str, Any],
        specs: list[TensorSpec],
        tensors: Iterable[bytes | bytearray | memoryview],
        out: BinaryIO,
    ) -> None:
        try:
            header = _header(format_data)
            gaps = [_decode_gap(gap) for gap in format_data["gaps"]]
            infos, alignment, _ = _parse_header(_Recorder(io.BytesIO(header), "the stored header"))
        except (KeyError, TypeError, ValueError, CheckpointError) as exc:
            raise MetadataError(f"the stored GGUF header is invalid ({exc})") from exc
        if [info.spec for info in infos] != [TensorSpec(s.name, s.dtype, tuple(s.shape)) for s in specs]:
            raise MetadataError("the stored GGUF header does not match the metadata's tensor list")
        expected = [info.offset - position for position, info in _positions(infos, len(header))]
        if len(gaps) != len(infos) + 1 or [len(gap) for gap in gaps[:-1]] != expected or len(gaps[-1]) >= alignment:
            raise MetadataError("the stored GGUF padding does not match the header")
        out.write(header)
        write_interleaved(out, gaps, tensors)

    @classmethod
    def encodings(cls, format_data: dict[str, Any]) -> dict[str, str]:
        quantized = format_data.get("quantized")
        return {str(name): str(kind) for name, kind in quantized.items()} if isinstance(quantized, dict) else {}

    @classmethod
    def decode(cls, encoding: str, data: memoryview, shape: tuple[int, ...]) -> Decoded | None:
        """Dequantized values (float32), through the ``gguf`` package's reference code, when it is installed."""
        try:
            import gguf
            import numpy as np
            from gguf.quants import dequantize
        except ImportError:
            return None
        try:
            kind = gguf.GGMLQuantizationType[encoding]
            values = dequantize(np.frombuffer(data, np.uint8).reshape(shape), kind).astype("<f4", copy=False)
        except (KeyError, ValueError, NotImplementedError, TypeError):
            return None  # a type this version of gguf cannot dequantize, or bytes that are not whole blocks
        return Decoded("F32", tuple(values.shape), values.reshape(-1).view(np.uint8).data)

    @classmethod
    def rebuild_format(
        cls, format_data: dict[str, Any], old_specs: list[TensorSpec], new_specs: list[TensorSpec]
    ) -> tuple[dict[str, Any], list[TensorSpec]]:
        """A header with new tensor infos for a merge's tensors, keeping every metadata key and value."""
        if [tuple(spec) for spec in old_specs] == [tuple(spec) for spec in new_specs]:
            return format_data, list(new_specs)
        old = _header(format_data)
        infos, alignment, kv_end = _parse_header(_Recorder(io.BytesIO(old), "the stored header"))
        types = {info.spec.name: info.ggml_type for info in infos}
        tensor_infos, offset, sizes = [], 0, []
        for spec in new_specs:
            ggml_type, dims = _ggml_layout(spec, types.get(spec.name))
            tensor_infos.append(_encode_info(spec.name, dims, ggml_type, offset))
            size = nbytes(spec.dtype, spec.shape)
            sizes.append(size)
            offset = _align(offset + size, alignment)
        header = old[:8] + struct.pack("<Q", len(new_specs)) + old[16:kv_end] + b"".join(tensor_infos)
        position = _align(len(header), alignment)
        gaps: list[int | str] = [position - len(header)]
        for size in sizes:  # each tensor padded to the alignment, as llama.cpp's writer does
            gaps.append(_align(size, alignment) - size)
        quantized = {s.name: BLOCKS[types[s.name]][0] for s in new_specs if types.get(s.name) in BLOCKS}
        new = {"header": header, "quantized": quantized, "gaps": gaps}
        return new, list(new_specs)


def _header(format_data: dict[str, Any]) -> bytes:
    """The stored header: bytes, or base64 text in metadata written before headers were stored as objects."""
    header = format_data["header"]
    return header if isinstance(header, bytes) else base64.b64decode(str(header), validate=True)


def _read_tensors(
    stream: BinaryIO, label: str, infos: list[_Info], alignment: int, header_size: int, gaps: list[int | str]
) -> Iterator[Tensor]:
    for position, info in _positions(infos, header_size):
        padding = info.offset - position
        if padding < 0 or padding >= alignment:
            raise CheckpointError(f"{label}: invalid GGUF file (tensor {info.spec.name!r} is not where GGUF puts it)")
        gaps.append(_encode_gap(read_exact(stream, padding, label, "padding")))
        yield Tensor(info.spec, read_exact(stream, info.size, label, f"tensor {info.spec.name!r}"))
    trailing = _read_upto(stream, alignment)  # the padding after the last tensor, shorter than the alignment
    if len(trailing) == alignment:
        raise CheckpointError(f"{label}: invalid GGUF file (unexpected bytes after the last tensor)")
    gaps.append(_encode_gap(trailing))


def _align(position: int, alignment: int) -> int:
    return -(-position // alignment) * alignment


def _ggml_layout(spec: TensorSpec, old_type: int | None) -> tuple[int, list[int]]:
    """The GGML type and dims (innermost first) that store ``spec``; a U8 tensor keeps its quantized type."""
    dims = list(reversed(spec.shape))
    if old_type in BLOCKS and spec.dtype == "U8" and dims:
        type_name, block, block_bytes = BLOCKS[old_type]
        if dims[0] % block_bytes:
            raise CheckpointError(f"tensor {spec.name!r} is no longer whole {type_name} blocks after the merge")
        return old_type, [dims[0] // block_bytes * block] + dims[1:]
    for ggml_type, dtype in PLAIN.items():
        if dtype == spec.dtype:
            return ggml_type, dims
    raise CheckpointError(f"GGUF has no type for tensor {spec.name!r} ({spec.dtype}); resolve it with ours or theirs")


def _encode_info(name: str, dims: list[int], ggml_type: int, offset: int) -> bytes:
    encoded = name.encode("utf-8")
    return (
        struct.pack("<Q", len(encoded))
        + encoded
        + struct.pack(f"<I{len(dims)}Q", len(dims), *dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


def _read_upto(stream: BinaryIO, size: int) -> bytes:
    pieces = []
    while size > 0:
        piece = stream.read(size)
        if not piece:
            break
        pieces.append(piece)
        size -= len(piece)
    return b"".join(pieces)


def _positions(infos: list[_Info], header_size: int) -> Iterator[tuple[int, _Info]]:
    """Each tensor with the file position where the previous one (or the header) ended."""
    position = header_size
    for info in infos:
        yield position, info
        position = max(position, info.offset) + info.size


def _encode_gap(data: bytes | bytearray) -> int | str:
    return len(data) if not any(data) else base64.b64encode(data).decode("ascii")


def _decode_gap(gap: int | str) -> bytes:
    if isinstance(gap, int) and 0 <= gap < 1 << 32:
        return bytes(gap)
    return base64.b64decode(str(gap), validate=True)


class _Recorder:
    """Reads the header from a stream, keeping every byte it reads."""

    def __init__(self, stream: BinaryIO, label: str) -> None:
        self.stream, self.label, self.data = stream, label, bytearray()

    def take(self, size: int) -> bytes:
        data = read_exact(self.stream, size, self.label, "the GGUF header")
        self.data += data
        return bytes(data)

    def number(self, code: str) -> int:
        return struct.unpack("<" + code, self.take(struct.calcsize(code)))[0]

    def invalid(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.label}: not a valid GGUF file ({what})")


def _parse_header(source: _Recorder) -> tuple[list[_Info], int, int]:
    """Read the header; return the tensors in data order with absolute offsets, the alignment, and where the
    key-value section ends."""
    if source.take(4) != MAGIC:
        raise source.invalid("it does not start with GGUF")
    raw_version = source.take(4)
    version = int.from_bytes(raw_version, "little")
    if version not in VERSIONS:
        if int.from_bytes(raw_version, "big") in VERSIONS:
            raise source.invalid("big-endian GGUF files are not supported")
        raise source.invalid(f"GGUF version {version} is not supported (only 2 and 3); convert it with llama.cpp")
    tensor_count, kv_count = source.number("Q"), source.number("Q")
    alignment = DEFAULT_ALIGNMENT
    for _ in range(kv_count):
        key = _string(source, MAX_NAME, "a metadata key")
        value_type = source.number("I")
        if key == "general.alignment":
            if value_type != UINT32:
                raise source.invalid("general.alignment is not a uint32")
            alignment = source.number("I")
            if not 0 < alignment <= MAX_ALIGNMENT or alignment & (alignment - 1):
                raise source.invalid(f"general.alignment {alignment} is not a power of two up to {MAX_ALIGNMENT}")
        else:
            _skip_value(source, value_type, 0)
    kv_end = len(source.data)
    infos = [_tensor_info(source) for _ in range(tensor_count)]
    data_start = _align(len(source.data), alignment)
    ordered = sorted(infos, key=lambda info: info.offset)  # stable: empty tensors keep their header order
    return [info._replace(offset=data_start + info.offset) for info in ordered], alignment, kv_end


def _string(source: _Recorder, limit: int | None, what: str) -> str:
    size = source.number("Q")
    if limit is not None and size > limit:
        raise source.invalid(f"{what} of {size} bytes")
    return source.take(size).decode("utf-8", errors="replace")


def _skip_value(source: _Recorder, value_type: int, depth: int) -> None:
    if value_type in VALUE_SIZES:
        source.take(VALUE_SIZES[value_type])
    elif value_type == STRING:
        source.take(source.number("Q"))
    elif value_type == ARRAY:
        if depth >= MAX_NESTING:
            raise source.invalid(f"metadata arrays nested more than {MAX_NESTING} deep")
        item_type, count = source.number("I"), source.number("Q")
        if item_type in VALUE_SIZES:
            source.take(count * VALUE_SIZES[item_type])
        else:
            for _ in range(count):
                _skip_value(source, item_type, depth + 1)
    else:
        raise source.invalid(f"unknown metadata value type {value_type}")


def _tensor_info(source: _Recorder) -> _Info:
    name = _string(source, MAX_NAME, "a tensor name")
    dims_count = source.number("I")
    if dims_count > MAX_DIMS:
        raise source.invalid(f"tensor {name!r} has {dims_count} dimensions (at most {MAX_DIMS})")
    dims = [source.number("Q") for _ in range(dims_count)]
    ggml_type, offset = source.number("I"), source.number("Q")
    shape = tuple(reversed(dims))  # GGUF lists the innermost dimension first
    if ggml_type in PLAIN:
        spec = TensorSpec(name, PLAIN[ggml_type], shape)
    elif ggml_type in BLOCKS:
        type_name, block, block_bytes = BLOCKS[ggml_type]
        if not dims or dims[0] % block:
            raise source.invalid(f"tensor {name!r} of type {type_name} has a row that is not whole blocks")
        spec = TensorSpec(name, "U8", shape[:-1] + (dims[0] // block * block_bytes,))
    else:
        raise source.invalid(f"tensor {name!r} has GGML type {ggml_type}, which git-theta does not know")
    problem = shape_error(spec.dtype, spec.shape)
    if problem:
        raise source.invalid(f"tensor {name!r} {problem}")
    return _Info(spec, ggml_type, offset, nbytes(spec.dtype, spec.shape))
