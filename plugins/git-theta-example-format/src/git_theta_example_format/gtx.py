"""The ``.gtx`` format and its git-theta plugin.

A file is ``GTX 1``, one line ``<name> <dtype> <dims, comma-separated>`` per tensor, an empty line, then the tensors'
bytes in header order (C order, little-endian). Names have no spaces; dtypes are git-theta's (``F32``, ``BF16``, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import numpy as np

from git_theta.checkpoints.base import Checkpoint, CheckpointError, Tensor, TensorSpec, write_tensor
from git_theta.checkpoints.bounded import read_bounded
from git_theta.dtypes import ITEMSIZE, nbytes

MAGIC = b"GTX 1\n"
MAX_LINE = 4096  # a header line longer than this is not ours: never read an unbounded line from a file
NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1"}


class GtxCheckpoint(Checkpoint):
    """The git-theta plugin: streams tensors in, writes them back byte for byte."""

    name = "gtx"  # must equal the entry-point name in pyproject.toml
    extensions = (".gtx",)
    accepts_chunks = True  # write() copies each tensor's chunks as they come: checkouts stream

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def read(self, stream: BinaryIO, label: str) -> tuple[dict[str, Any], Iterator[Tensor]]:
        if _line(stream, label) != MAGIC:
            raise CheckpointError(f"{label}: not a .gtx file (it does not start with 'GTX 1')")
        specs = []
        while (line := _line(stream, label)) != b"\n":
            specs.append(_parse_spec(line, label))
        # The header is rebuilt from the specs, so there is nothing else to keep; a version leaves room to grow.
        return {"version": 1}, _tensors(stream, specs, label)

    def write(
        self,
        format_data: dict[str, Any],
        specs: list[TensorSpec],
        tensors: Iterable[bytes | bytearray | memoryview],
        out: BinaryIO,
    ) -> None:
        out.write(_header(specs))
        for data in tensors:
            write_tensor(out, data)


def save(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a .gtx file."""
    codes = {np.dtype(code): name for name, code in NUMPY.items()}
    specs = [TensorSpec(name, codes[array.dtype.newbyteorder("<")], array.shape) for name, array in arrays.items()]
    with open(path, "wb") as out:
        out.write(_header(specs))
        for array in arrays.values():
            out.write(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())


def load(path: str) -> dict[str, np.ndarray]:
    """Read a .gtx file into numpy arrays."""
    with open(path, "rb") as stream:
        _, tensors = GtxCheckpoint().read(stream, path)
        return {t.spec.name: np.frombuffer(t.data, dtype=NUMPY[t.spec.dtype]).reshape(t.spec.shape) for t in tensors}


def _header(specs: list[TensorSpec]) -> bytes:
    lines = [f"{s.name} {s.dtype} {','.join(map(str, s.shape))}\n" for s in specs]
    return MAGIC + "".join(lines).encode("utf-8") + b"\n"


def _line(stream: BinaryIO, label: str) -> bytes:
    line = stream.readline(MAX_LINE)
    if not line.endswith(b"\n"):
        raise CheckpointError(f"{label}: invalid .gtx file (the header is truncated or has an overlong line)")
    return line


def _parse_spec(line: bytes, label: str) -> TensorSpec:
    try:
        name, dtype, dims = line.decode("utf-8").split(" ")
        shape = tuple(int(dim) for dim in dims.strip().split(",") if dim)
    except ValueError:
        raise CheckpointError(f"{label}: invalid .gtx header line {line[:80]!r}") from None
    if dtype not in ITEMSIZE or any(dim < 0 for dim in shape):
        raise CheckpointError(f"{label}: invalid .gtx header line {line[:80]!r} (unknown dtype or negative size)")
    return TensorSpec(name, dtype, shape)


def _tensors(stream: BinaryIO, specs: list[TensorSpec], label: str) -> Iterator[Tensor]:
    for spec in specs:
        # The size comes from the file: read_bounded allocates only as the bytes arrive, so a lying header fails
        # at the end of the file instead of allocating what it claims.
        yield Tensor(spec, read_bounded(stream, nbytes(spec.dtype, spec.shape), label, f"tensor {spec.name!r}"))
    if stream.read(1):
        raise CheckpointError(f"{label}: invalid .gtx file (unexpected bytes after the last tensor)")
