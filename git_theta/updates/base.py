"""The interface every update type implements, and the arrays it works on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from git_theta.dtypes import bits_dtype, needs_ml_dtypes, numpy_dtype
from git_theta.errors import GitThetaError

if TYPE_CHECKING:
    from pathlib import Path  # pathlib imports urllib (~5 ms): a checkout of a delta needs neither


class UpdateError(GitThetaError):
    """An update cannot be applied, inferred or read."""


class Payload(NamedTuple):
    """What an update object stores: named arrays and a few parameters (JSON values)."""

    parts: dict[str, np.ndarray]
    params: dict[str, Any]


class TensorUpdate(NamedTuple):
    """An update of one tensor, as an update file gives it: the update type's name and its payload, and the value it
    applies to when the file sets that too (PEFT saves the embedding layers it adapts); else the tensor's own."""

    kind: str
    payload: Payload
    base: np.ndarray | None = None


class Updates(NamedTuple):
    """The updates an update file holds, by the tensor each applies to (a name to match against the checkpoint's).

    ``optional`` ones apply only where the checkpoint has that tensor: PEFT scales a module's bias with IA3 only when
    the module has one. Each is named ``<module>.bias`` and follows the tensor its ``<module>.weight`` matched.
    """

    required: dict[str, TensorUpdate]
    optional: dict[str, TensorUpdate]


class Update(ABC):
    """An update type: turns a base tensor and a payload into the new tensor, exactly and on every machine alike.

    ``apply`` must be deterministic bit for bit: use only correctly rounded element-wise operations in a fixed order
    (no BLAS products, whose summation order varies between machines). The filter records the SHA-256 of the result
    and checks it whenever the tensor is rebuilt.
    """

    #: The entry-point name, recorded in metadata as the tensor's ``update``.
    name: ClassVar[str]

    @abstractmethod
    def apply(self, base: np.ndarray, payload: Payload) -> np.ndarray:
        """Return the new tensor: same dtype and shape as ``base``."""

    def infer(self, base: np.ndarray, new: np.ndarray) -> Payload | None:
        """Return a payload that rebuilds ``new`` from ``base`` exactly, or None when this type cannot."""
        return None

    def mismatch(self, shape: tuple[int, ...], payload: Payload) -> str | None:
        """Say why ``payload`` cannot apply to a tensor of ``shape`` (None if it can, or if this type cannot tell)."""
        return None

    def on_bit_patterns(self, params: dict[str, Any]) -> bool:
        """Whether ``apply`` with these parameters only moves or integer-adds bit patterns, never values: bf16 and
        fp8 tensors and parts are then given to it as unsigned integers of their width (``as_array``'s ``bits``),
        sparing ml_dtypes' import (0.6 s on a fresh install)."""
        return False


def as_array(
    data: bytes | bytearray | memoryview, dtype: str, shape: tuple[int, ...], bits: bool = False
) -> np.ndarray:
    """View exact tensor bytes as an array (read-only when ``data`` is); with ``bits``, a type numpy lacks (bf16,
    fp8) as unsigned integers of its width."""
    kind = bits_dtype(dtype) if bits and needs_ml_dtypes(dtype) else numpy_dtype(dtype)
    return np.frombuffer(data, dtype=kind).reshape(shape)


def raw_bytes(array: np.ndarray) -> memoryview:
    """An array's exact bytes in C order (any dtype, including those the buffer protocol does not know)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def round_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round float64 (or complex128) ``values`` once to ``dtype``, to nearest even, as numpy and ml_dtypes do."""
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(dtype)


#: Float64 work arrays of an update are at most about this large: a tensor is rebuilt a few rows at a time.
CHUNK_BYTES = 16 << 20


def row_chunks(shape: tuple[int, ...]) -> list[Any]:
    """Slices of the first axis whose float64 (or complex128) copies hold about ``CHUNK_BYTES``: an update applied
    chunk by chunk holds the tensor and a few chunks, not a few float64 copies of the tensor."""
    if not shape:
        return [...]  # a scalar: the whole of it
    per_row = 16 * int(np.prod(shape[1:], dtype=np.int64))
    step = max(1, CHUNK_BYTES // max(1, per_row))
    return [slice(start, start + step) for start in range(0, shape[0], step)] or [slice(0, 0)]


def widened(array: np.ndarray) -> np.ndarray:
    """``array`` in float64 (complex128 for complex): exact for every float dtype git-theta stores."""
    if np.issubdtype(array.dtype, np.complexfloating):
        return array.astype(np.complex128)
    if not _is_float(array.dtype):
        raise UpdateError(f"this update needs floating-point tensors, not {array.dtype}")
    return array.astype(np.float64)


def _is_float(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating) or dtype.kind == "V" or "float" in dtype.name


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint file in a supported format, as arrays."""
    from git_theta.checkpoints.detect import detect

    if not path.is_file():
        raise UpdateError(f"update file {path} does not exist")
    with open(path, "rb") as stream:
        head = stream.read(4096)
        stream.seek(0)
        _, tensors = detect(str(path), head)().read(stream, str(path))
        return {t.spec.name: as_array(bytes(t.data), t.spec.dtype, t.spec.shape) for t in tensors}


def expect_kind(kind: str, found: str, what: str) -> None:
    """Fail unless the update type asked for is the one an update file holds."""
    if kind != found:
        raise UpdateError(f"{what}, not {kind}; use --update-type {found}")


def as_matrix(shape: tuple[int, ...]) -> tuple[int, int]:
    """The matrix a tensor is viewed as by matrix updates: its first axis by all the others (a conv kernel as out x
    in * kh * kw, as PEFT's LoRA sees it; a vector as a column)."""
    rows = shape[0] if shape else 1
    return rows, int(np.prod(shape[1:], dtype=np.int64))
