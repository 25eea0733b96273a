"""Walking a msgpack document byte by byte: its flax arrays come out as tensors, every other byte as the skeleton.

Used by the ``flax`` checkpoint plugin. The walk reads from a *source*: the file being cleaned (``StreamSource``, which
records the skeleton), a stored skeleton being checked (``SkeletonSource``), or the first bytes of a file being
sniffed (``HeadSource``). Every size the file declares is read with ``read_exact``, so a lying one fails at the end
of the file instead of allocating what it claims. Markers: github.com/msgpack/msgpack/blob/master/spec.md.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple, Protocol

from git_theta.checkpoints.base import CheckpointError, TensorSpec, Truncated, read_exact
from git_theta.dtypes import BY_FRAMEWORK_NAME, nbytes

NDARRAY = 1
MAX_DEPTH = 100
MAX_KEY = 1 << 16
MAX_DIMS = 64
READ_AHEAD = 1 << 16

#: numpy dtype names (what flax writes) -> git-theta dtypes; any other dtype is kept as its raw bytes (U8).
DTYPES = BY_FRAMEWORK_NAME

# msgpack markers (github.com/msgpack/msgpack/blob/master/spec.md) -> bytes that follow, or bytes of their length.
_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FIXED |= {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
_LENGTH = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4}
_LENGTH |= {0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}
_STRINGS, _BINS, _EXTS = (0xD9, 0xDA, 0xDB), (0xC4, 0xC5, 0xC6), (0xC7, 0xC8, 0xC9)
_UNSIGNED = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q"}
_SIGNED = {0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}


class ArrayHeader(NamedTuple):
    """Where an array's extension header starts (bytes consumed before it), and the dtype name it holds."""

    start: int
    dtype_name: str


class Source(Protocol):
    """Where the walk's bytes come from."""

    @property
    def consumed(self) -> int:
        """Bytes taken so far, tensors excluded."""

    def take(self, size: int) -> bytes:
        """The next ``size`` bytes of the structure."""

    def tensor(self, size: int, name: str, header: ArrayHeader) -> Any:
        """The next ``size`` bytes: an array's data."""

    def invalid(self, what: str) -> CheckpointError:
        """An error saying the document is not valid, and ``what`` is wrong."""


# --- sources: where the walk's bytes come from --------------------------------------------------------------------


class StreamSource:
    """The checkpoint being cleaned: non-tensor bytes go to the skeleton, latin-1 decoded (one char per byte).

    The structure is read in many tiny pieces, so it is read ahead in blocks; tensors are read whole.
    """

    def __init__(self, stream: BinaryIO, label: str, skeleton: list[str]) -> None:
        self.stream, self.label, self.skeleton = stream, label, skeleton
        self.run = bytearray()
        self.pending, self.at, self.consumed = b"", 0, 0

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.pending) and size < READ_AHEAD:
            self.pending, self.at = self.pending[self.at :] + self.stream.read(READ_AHEAD), 0
        data = bytes(self._read(size, "the msgpack structure"))
        self.run += data
        self.consumed += size
        return data

    def tensor(self, size: int, name: str, header: ArrayHeader) -> bytearray:
        self.skeleton.append(self.run.decode("latin-1"))
        self.run = bytearray()
        return self._read(size, f"tensor {name!r}")

    def finish(self) -> None:
        if self.at < len(self.pending) or self.stream.read(1):
            raise self.invalid("unexpected bytes after the state dict")
        self.skeleton.append(self.run.decode("latin-1"))

    def invalid(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.label}: not a valid flax msgpack file ({what})")

    def _read(self, size: int, what: str) -> bytearray:
        available = len(self.pending) - self.at
        if size <= available:
            self.at += size
            return bytearray(self.pending[self.at - size : self.at])
        head = self.pending[self.at :]
        self.pending, self.at = b"", 0
        return read_exact(self.stream, size, self.label, what, prefix=head)


class SkeletonSource:
    """A stored skeleton, walked to check it: each tensor must fall exactly between two runs."""

    def __init__(self, runs: list[bytes]) -> None:
        self.runs, self.index, self.offset, self.consumed = runs, 0, 0, 0
        self.arrays: list[tuple[int, int, str]] = []  # (run, offset of the extension header, dtype name)

    def take(self, size: int) -> bytes:
        run = self.runs[self.index]
        if self.offset + size > len(run):
            raise self.invalid("a run ends inside the structure")
        self.offset += size
        self.consumed += size
        return run[self.offset - size : self.offset]

    def tensor(self, size: int, name: str, header: ArrayHeader) -> None:
        # Where the array's extension header starts within this run: a merge may rewrite it (flax.rebuild_format).
        self.arrays.append((self.index, self.offset - (self.consumed - header.start), header.dtype_name))
        if self.offset != len(self.runs[self.index]) or self.index + 1 >= len(self.runs):
            raise self.invalid(f"tensor {name!r} is not between two runs")
        self.index, self.offset = self.index + 1, 0

    def finish(self) -> None:
        if self.index != len(self.runs) - 1 or self.offset != len(self.runs[-1]):
            raise self.invalid("bytes left after the state dict")

    def invalid(self, what: str) -> CheckpointError:
        return CheckpointError(what)


class HeadSource:
    """The first bytes of a file, for sniffing: reaching a tensor is success, running out is inconclusive."""

    def __init__(self, head: bytes) -> None:
        self.head, self.offset, self.found = head, 0, False

    @property
    def consumed(self) -> int:
        return self.offset

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.head):
            raise Truncated("head")
        self.offset += size
        return self.head[self.offset - size : self.offset]

    def tensor(self, size: int, name: str, header: ArrayHeader) -> None:
        self.found = True
        raise Truncated("found")

    def invalid(self, what: str) -> CheckpointError:
        return CheckpointError(what)


# --- the walk ------------------------------------------------------------------------------------------------------


def walk(source: Source, path: str, depth: int, top: bool = False) -> Iterator[tuple[TensorSpec, Any]]:
    """Walk one msgpack value, yielding its arrays (spec, bytes) and passing every other byte to the skeleton."""
    if depth > MAX_DEPTH:
        raise source.invalid(f"nested more than {MAX_DEPTH} levels deep")
    marker = source.take(1)[0]
    is_map = 0x80 <= marker <= 0x8F or marker in (0xDE, 0xDF)
    if top and not is_map:
        raise source.invalid("the top level is not a map")
    if is_map or 0x90 <= marker <= 0x9F or marker in (0xDC, 0xDD):
        count = marker & 0x0F if marker < 0xA0 else _length(source, marker)
        for index in range(count):
            key = _key(source) if is_map else str(index)
            yield from walk(source, f"{path}/{key}" if path else key, depth + 1)
    elif marker <= 0x7F or marker >= 0xE0:
        return
    elif 0xA0 <= marker <= 0xBF:
        source.take(marker & 0x1F)
    elif marker in _FIXED:
        source.take(_FIXED[marker])
    elif marker in _STRINGS or marker in _BINS:
        source.take(_length(source, marker))
    elif marker in _FIXEXT or marker in _EXTS:
        size = _FIXEXT[marker] if marker in _FIXEXT else _length(source, marker)
        if source.take(1)[0] == NDARRAY:
            yield _array(source, path, size, 2 + _LENGTH.get(marker, 0))
        else:
            source.take(size)
    else:
        raise source.invalid(f"byte 0x{marker:02x} does not start a msgpack value")


def _length(source: Source, marker: int) -> int:
    width = _LENGTH[marker]
    return int.from_bytes(source.take(width), "big")


def _key(source: Source) -> str:
    marker = source.take(1)[0]
    if 0xA0 <= marker <= 0xBF or marker in _STRINGS:
        size = marker & 0x1F if marker <= 0xBF else _length(source, marker)
        if size > MAX_KEY:
            raise source.invalid(f"a key of {size} bytes")
        try:
            return source.take(size).decode("utf-8")
        except UnicodeDecodeError:
            raise source.invalid("a key is not UTF-8") from None
    integer = _integer(source, marker)
    if integer is None:
        raise source.invalid(f"a map key of msgpack type 0x{marker:02x} (only strings and integers name tensors)")
    return str(integer)


def _integer(source: Source, marker: int) -> int | None:
    if marker <= 0x7F:
        return marker
    if marker >= 0xE0:
        return marker - 0x100
    code = _UNSIGNED.get(marker) or _SIGNED.get(marker)
    if code is None:
        return None
    return struct.unpack(code, source.take(struct.calcsize(code)))[0]


def _array(source: Source, path: str, size: int, ext_header: int) -> tuple[TensorSpec, Any]:
    """Parse flax's array payload ``[shape, dtype name, bin]``; its header stays in the skeleton, its data does not."""
    start = source.consumed
    marker = source.take(1)[0]
    if marker != 0x93:
        raise source.invalid(f"array {path!r} is not [shape, dtype, data]")
    marker = source.take(1)[0]
    if not (0x90 <= marker <= 0x9F or marker in (0xDC, 0xDD)):
        raise source.invalid(f"array {path!r} has no shape")
    dims = marker & 0x0F if marker <= 0x9F else _length(source, marker)
    if dims > MAX_DIMS:
        raise source.invalid(f"array {path!r} has {dims} dimensions")
    shape = []
    for _ in range(dims):
        dim = _integer(source, source.take(1)[0])
        if dim is None or dim < 0:
            raise source.invalid(f"array {path!r} has an invalid shape")
        shape.append(dim)
    marker = source.take(1)[0]
    if not (0xA0 <= marker <= 0xBF or marker in _STRINGS or marker in _BINS):
        raise source.invalid(f"array {path!r} has no dtype name")
    name_size = marker & 0x1F if marker <= 0xBF else _length(source, marker)
    if name_size > 64:
        raise source.invalid(f"array {path!r} has an invalid dtype name")
    dtype_name = source.take(name_size).decode("latin-1")
    marker = source.take(1)[0]
    if marker not in _BINS:
        raise source.invalid(f"array {path!r} has no data")
    data_size = _length(source, marker)
    if source.consumed - start + data_size != size:
        raise source.invalid(f"array {path!r} does not fill its extension")
    dtype = DTYPES.get(dtype_name)
    if dtype is None:  # a dtype git-theta has no name for (int4, ...): its raw bytes; the header says the rest
        dtype, shape = "U8", [data_size]
    elif data_size != nbytes(dtype, shape):
        raise source.invalid(f"array {path!r} has {data_size} bytes, not what its shape and dtype need")
    header = ArrayHeader(start - ext_header, dtype_name)
    return TensorSpec(path, dtype, tuple(shape)), source.tensor(data_size, path, header)


# --- encoding an array's header, as msgpack-python (and so flax) writes it -----------------------------------------


def encode_array_header(shape: tuple[int, ...], dtype_name: str, data_size: int) -> bytes:
    """The extension header and payload header of a flax array; its ``data_size`` bytes follow."""
    name = dtype_name.encode("ascii")
    payload = (
        b"\x93" + _sized(len(shape), 0x90, 16, (0xDC, 0xDD)) + b"".join(_uint(dim) for dim in shape)
        + _sized(len(name), 0xA0, 32, (0xD9, 0xDA, 0xDB)) + name + _sized(data_size, None, 0, (0xC4, 0xC5, 0xC6))
    )  # fmt: skip
    size = len(payload) + data_size
    fixext = {length: marker for marker, length in _FIXEXT.items()}
    if size in fixext:
        return bytes([fixext[size], NDARRAY]) + payload
    return _sized(size, None, 0, (0xC7, 0xC8, 0xC9)) + bytes([NDARRAY]) + payload


def _sized(count: int, fix: int | None, fix_limit: int, markers: tuple[int, ...]) -> bytes:
    # The smallest form msgpack allows: a fix-marker below fix_limit, else 1-, 2- or 4-byte lengths in turn.
    if fix is not None and count < fix_limit:
        return bytes([fix | count])
    for marker in markers:
        width = _LENGTH[marker]
        if count < 1 << (8 * width):
            return bytes([marker]) + count.to_bytes(width, "big")
    raise ValueError(f"{count} is too large for msgpack")


def _uint(value: int) -> bytes:
    if value < 0x80:
        return bytes([value])
    for marker, code in _UNSIGNED.items():
        if value < 1 << (8 * struct.calcsize(code)):
            return bytes([marker]) + struct.pack(code, value)
    raise ValueError(f"{value} is too large for msgpack")
