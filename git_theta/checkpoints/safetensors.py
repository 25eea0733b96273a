"""safetensors: streamed tensor by tensor, rebuilt byte for byte from the original header."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, TypeGuard

from git_theta.checkpoints.base import Checkpoint, CheckpointError, Tensor, TensorSpec, read_exact, write_tensor
from git_theta.dtypes import ITEMSIZE, nbytes, shape_error
from git_theta.metadata import MetadataError

#: The safetensors library refuses headers above 100 MB; so do we.
MAX_HEADER = 100_000_000


class SafetensorsCheckpoint(Checkpoint):
    """The safetensors format: 8-byte header length, JSON header, then the tensors' bytes."""

    name = "safetensors"
    extensions = (".safetensors",)
    accepts_chunks = True

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        if len(head) < 10:
            return False
        (length,) = struct.unpack("<Q", head[:8])
        return 2 <= length <= MAX_HEADER and head[8:9] == b"{"

    def read(self, stream: BinaryIO, label: str) -> tuple[dict[str, Any], Iterator[Tensor]]:
        (length,) = struct.unpack("<Q", bytes(read_exact(stream, 8, label, "the header length")))
        if length > MAX_HEADER:
            raise CheckpointError(f"{label}: not a valid safetensors file (header length {length} is too large)")
        header_bytes = bytes(read_exact(stream, length, label, "the header"))
        specs = _parse_header(header_bytes, label)
        return {"header": header_bytes.decode("utf-8")}, _read_tensors(stream, specs, label)

    def specs(self, stream: BinaryIO, label: str) -> list[TensorSpec]:
        format_data, _ = self.read(stream, label)  # the header only: tensors are read as they are iterated
        return _parse_header(format_data["header"].encode("utf-8"), label)

    def write(
        self,
        format_data: dict[str, Any],
        specs: list[TensorSpec],
        tensors: Iterable[bytes | bytearray | memoryview],
        out: BinaryIO,
    ) -> None:
        if not isinstance(format_data.get("header"), str):
            raise MetadataError("the safetensors format data has no header")
        try:
            header_bytes = format_data["header"].encode("utf-8")  # JSON allows lone surrogates, UTF-8 does not
            expected = _parse_header(header_bytes, "metadata")
        except (CheckpointError, UnicodeEncodeError) as exc:
            raise MetadataError(f"the stored safetensors header is invalid ({exc})") from exc
        if [(s.name, s.dtype, s.shape) for s in expected] != [(s.name, s.dtype, s.shape) for s in specs]:
            raise MetadataError("the stored safetensors header does not match the metadata's tensor list")
        out.write(struct.pack("<Q", len(header_bytes)))
        out.write(header_bytes)
        for data in tensors:
            write_tensor(out, data)

    @classmethod
    def rebuild_format(
        cls, format_data: dict[str, Any], old_specs: list[TensorSpec], new_specs: list[TensorSpec]
    ) -> tuple[dict[str, Any], list[TensorSpec]]:
        """A new header for a merge's tensors, in the given order, keeping ``__metadata__``."""
        if [tuple(spec) for spec in old_specs] == [tuple(spec) for spec in new_specs]:
            return format_data, list(new_specs)
        old = json.loads(str(format_data["header"]))
        header: dict[str, Any] = {"__metadata__": old["__metadata__"]} if "__metadata__" in old else {}
        offset = 0
        for spec in new_specs:
            size = nbytes(spec.dtype, spec.shape)
            placed = {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [offset, offset + size]}
            header[spec.name] = placed
            offset += size
        text = json.dumps(header, separators=(",", ":"))
        # As the safetensors library does: pad the header with spaces so that the data starts 8-byte aligned.
        return {**format_data, "header": text + " " * (-len(text) % 8)}, list(new_specs)


def _parse_header(header_bytes: bytes, label: str) -> list[TensorSpec]:
    """Validate the header and return the tensors in data order; they must tile the data section exactly."""
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # also too deeply nested, or an integer of thousands of digits
        raise CheckpointError(f"{label}: not a valid safetensors file (header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{label}: not a valid safetensors file (header is not a JSON object)")
    placed = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        placed.append(_parse_entry(name, info, label))
    placed.sort(key=lambda item: (item[0], item[1]))  # an empty tensor may share its offset with the next
    position = 0
    for begin, end, spec in placed:
        if begin != position:
            raise CheckpointError(f"{label}: invalid safetensors file (tensor {spec.name!r} is not contiguous)")
        position = end
    return [spec for _, _, spec in placed]


def _parse_entry(name: str, info: Any, label: str) -> tuple[int, int, TensorSpec]:
    fields = info if isinstance(info, dict) else {}
    dtype, shape, offsets = fields.get("dtype"), fields.get("shape"), fields.get("data_offsets")
    if not isinstance(dtype, str) or not _valid_offsets(offsets):
        raise CheckpointError(f"{label}: invalid safetensors file (bad entry for tensor {name!r})")
    if dtype not in ITEMSIZE:
        raise CheckpointError(f"{label}: tensor {name!r} has dtype {dtype!r}, which git-theta does not support")
    problem = shape_error(dtype, shape)
    if problem:
        raise CheckpointError(f"{label}: invalid safetensors file (tensor {name!r} {problem})")
    assert shape is not None  # shape_error accepted it
    begin, end = offsets
    if end - begin != nbytes(dtype, shape):
        raise CheckpointError(f"{label}: invalid safetensors file (tensor {name!r} size does not match its shape)")
    return begin, end, TensorSpec(name, dtype, tuple(shape))


def _valid_offsets(offsets: Any) -> TypeGuard[list[int]]:
    """``[begin, end]``: two ints (not bools), in order."""
    return (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(type(offset) is int for offset in offsets)
        and 0 <= offsets[0] <= offsets[1]
    )


def _read_tensors(stream: BinaryIO, specs: list[TensorSpec], label: str) -> Iterator[Tensor]:
    for spec in specs:
        # No local name for the bytes: while the next tensor is read, it would still hold this one's buffer, which
        # the clean filter could then not take back for reuse (checkpoints/buffers.py).
        yield Tensor(spec, read_exact(stream, nbytes(spec.dtype, spec.shape), label, f"tensor {spec.name!r}"))
    if stream.read(1):
        raise CheckpointError(f"{label}: invalid safetensors file (unexpected bytes after the last tensor)")
