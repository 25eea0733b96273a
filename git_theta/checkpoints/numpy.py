"""NumPy ``.npz`` archives of arrays (never unpickled: object arrays are refused)."""

from __future__ import annotations

import tokenize
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from functools import cache
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from git_theta.checkpoints.base import Checkpoint, CheckpointError, Tensor, TensorSpec, read_exact
from git_theta.checkpoints.spool import copy_out, first_zip_member, scratch_file, spool
from git_theta.dtypes import nbytes, shape_error

if TYPE_CHECKING:
    import numpy as np

#: numpy dtype (little-endian) -> git-theta dtype name.
DTYPES = {
    "f8": "F64", "f4": "F32", "f2": "F16",
    "i8": "I64", "i4": "I32", "i2": "I16", "i1": "I8",
    "u8": "U64", "u4": "U32", "u2": "U16", "u1": "U8",
    "b1": "BOOL", "c8": "C64", "c16": "C128",
}  # fmt: skip
#: How an archive starts: with a member, or (no arrays) with the end of the central directory.
ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06")


class NpzCheckpoint(Checkpoint):
    """``numpy.savez`` / ``savez_compressed`` archives; the round trip is exact for every array."""

    name = "npz"
    extensions = (".npz",)

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return first_zip_member(head).endswith(".npy")

    def read(self, stream: BinaryIO, label: str) -> tuple[dict[str, Any], Iterator[Tensor]]:
        spooled = spool(stream)
        try:
            # numpy.load takes a file for an archive only by its first bytes; zipfile would also skip a prefix.
            if spooled.read(4) not in ZIP_STARTS:
                raise zipfile.BadZipFile("it does not start with a zip entry")
            spooled.seek(0)
            archive = zipfile.ZipFile(spooled)
        except (zipfile.BadZipFile, NotImplementedError, OSError, ValueError) as exc:  # names not UTF-8 too
            spooled.close()
            raise CheckpointError(f"{label}: not a valid .npz archive ({exc})") from exc
        members = archive.infolist()
        compressed = any(member.compress_type != zipfile.ZIP_STORED for member in members)
        return {"compressed": compressed}, _read_arrays(archive, spooled, members, label)

    def write(
        self,
        format_data: dict[str, Any],
        specs: list[TensorSpec],
        tensors: Iterable[bytes | bytearray | memoryview],
        out: BinaryIO,
    ) -> None:
        compression = zipfile.ZIP_DEFLATED if format_data.get("compressed") else zipfile.ZIP_STORED
        for spec in specs:
            if spec.dtype not in DTYPES.values():
                raise CheckpointError(
                    f"an .npz archive cannot hold tensor {spec.name!r} of dtype {spec.dtype} "
                    "(numpy has no such dtype); store it in another format"
                )
        import numpy as np  # imported when a file of this format is read or written, not when formats are detected

        with scratch_file() as target:
            with zipfile.ZipFile(target, "w", compression=compression) as archive:
                for spec, data in zip(specs, tensors, strict=True):
                    array = np.frombuffer(data, dtype=_numpy_dtypes()[spec.dtype]).reshape(spec.shape)
                    with archive.open(spec.name + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)
            copy_out(target, out)

    @classmethod
    def rebuild_format(
        cls, format_data: dict[str, Any], old_specs: list[TensorSpec], new_specs: list[TensorSpec]
    ) -> tuple[dict[str, Any], list[TensorSpec]]:
        """Any tensors: an archive holds one member per array, written in the order given."""
        return format_data, list(new_specs)


def _read_arrays(
    archive: zipfile.ZipFile, spooled: Any, members: list[zipfile.ZipInfo], label: str
) -> Iterator[Tensor]:
    try:
        for member in members:
            if not member.filename.endswith(".npy"):
                raise CheckpointError(f"{label}: .npz member {member.filename!r} is not a .npy array")
            with archive.open(member) as handle:
                yield _read_array(handle, member.filename, label)
    except CheckpointError:
        raise
    # RuntimeError: zipfile's word for an encrypted member; UnicodeDecodeError: a member name flagged UTF-8 is not.
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{label}: the .npz archive is corrupt or truncated ({exc})") from exc
    finally:
        archive.close()
        spooled.close()


def _read_array(handle: IO[bytes], member: str, label: str) -> Tensor:
    """One ``.npy`` member: its header checked before its data is read, as far as the data arrives."""
    import numpy as np

    try:
        version = np.lib.format.read_magic(handle)
        # Version 3.0 only allows UTF-8 in field names, which no array git-theta reads has: its layout is 2.0's.
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, numpy_dtype = read_header(handle)
    except (ValueError, SyntaxError, TypeError, tokenize.TokenError) as exc:
        raise CheckpointError(f"{label}: array {member!r} cannot be read safely ({exc})") from exc
    dtype = _dtype_name(numpy_dtype, label, member)
    problem = shape_error(dtype, shape)
    if problem:
        raise CheckpointError(f"{label}: invalid .npz archive (array {member!r} {problem})")
    data = read_exact(handle, nbytes(dtype, shape), label, f"array {member!r}")
    array = np.frombuffer(data, dtype=numpy_dtype)
    array = array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)
    flat = np.ascontiguousarray(array, dtype=_numpy_dtypes()[dtype]).reshape(-1).view(np.uint8)
    return Tensor(TensorSpec(member[:-4], dtype, tuple(shape)), flat.data)


@cache
def _numpy_dtypes() -> dict[str, np.dtype]:
    """git-theta dtype name -> numpy dtype (little-endian)."""
    import numpy as np

    return {name: np.dtype("<" + code) for code, name in DTYPES.items()}


def _dtype_name(dtype: np.dtype, label: str, member: str) -> str:
    code = dtype.newbyteorder("<").str[1:] if dtype.byteorder != "|" else dtype.str[1:]
    if code not in DTYPES:
        raise CheckpointError(f"{label}: array {member!r} has dtype {dtype}, which git-theta does not support")
    return DTYPES[code]
