"""The self-describing, lossless format of one stored tensor object (docs/object-format.md).

    offset 0   8 bytes   magic b"GTOBJ" + b"\\x00" + version (1) + b"\\x00"
    offset 8   4 bytes   little-endian length H of the header
    offset 12  H bytes   UTF-8 JSON header, e.g.
                         {"codec": "zstd", "group": 4, "block": 1048576, "size": 1536, "hash": "sha256:<hex>"}
    then       payload

``codec`` is ``raw`` (payload = the tensor's bytes) or ``zstd``: one zstd frame holding, for each ``block`` bytes of
the tensor, those bytes *byte-grouped*: all first bytes of the block's elements, then all second bytes, and so on
(``group`` is the element width). Grouping puts the slowly varying sign/exponent bytes of floats side by side, which
is what makes weights compress (the idea behind ZipNN). Encoding is deterministic, so equal tensors give equal objects.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import sys
import threading
from typing import BinaryIO, Protocol

import zstandard

from git_theta.storage.errors import ObjectError

MAGIC = b"GTOBJ\x00\x01\x00"
BLOCK = 1 << 20
DEFAULT_LEVEL = 1
#: Below this size compression rarely pays for its frame header; such tensors are stored raw.
MIN_COMPRESS = 512
READ_SIZE = 1 << 20
#: Tensors at least this large are ungrouped with numpy, whose import then costs little next to the work.
NUMPY_UNGROUP = 64 << 20
_MAX_HEADER = 1 << 16

_local = threading.local()


class Sink(Protocol):
    """Where an encoded object is written (an object-store writer)."""

    def write(self, data: bytes | memoryview) -> object: ...

    def reset(self) -> None: ...


class MemorySink(io.BytesIO):
    """An in-memory sink for small objects."""

    def reset(self) -> None:
        self.seek(0)
        self.truncate()


def encode(raw: memoryview, raw_hash: str, group: int, sink: Sink, level: int = DEFAULT_LEVEL) -> str:
    """Write ``raw`` as an object to ``sink``; return the codec used (raw when compression does not help)."""
    if len(raw) >= MIN_COMPRESS:
        header = {"codec": "zstd", "group": group, "block": BLOCK, "size": len(raw), "hash": raw_hash}
        written = _write_header(sink, header)
        written += _write_zstd(raw, group, sink, level)
        if written < len(raw) + 64:
            return "zstd"
        sink.reset()
    _write_header(sink, {"codec": "raw", "size": len(raw), "hash": raw_hash})
    sink.write(raw)
    return "raw"


def decode(
    stream: BinaryIO,
    tensor_hash: str,
    tensor_size: int,
    object_size: int,
    label: str,
    *,
    out: bytearray | None = None,
    full_check: bool = False,
) -> memoryview:
    """Read one object from ``stream`` and return the tensor's exact bytes, checked for corruption.

    ``tensor_hash``, ``tensor_size`` and ``object_size`` are what the metadata says. The bytes are written into
    ``out`` when it is given (and large enough), else into a new buffer. A zstd frame carries a checksum of its
    content, checked as it is decoded; raw objects, and every object when ``full_check``, are compared with the
    tensor's SHA-256.
    """
    counted = _Counted(stream)
    header = read_header(counted, label)
    if header["hash"] != tensor_hash or header["size"] != tensor_size:
        raise ObjectError(f"object {label} holds a different tensor than the metadata expects")
    if out is None or len(out) < tensor_size:
        out = bytearray(tensor_size)
    view = memoryview(out)[:tensor_size]
    if header["codec"] == "raw":
        _read_exact(counted, view, label)
    else:
        _read_zstd(counted, out, tensor_size, header["group"], header["block"], label)
    while counted.read(READ_SIZE):
        pass
    if counted.count != object_size:
        state = "truncated" if counted.count < object_size else "corrupt (longer than recorded)"
        raise ObjectError(f"object {label} is {state}: {counted.count} bytes, expected {object_size}")
    if (header["codec"] == "raw" or full_check) and "sha256:" + hashlib.sha256(view).hexdigest() != tensor_hash:
        raise ObjectError(f"object {label} is corrupt: its content does not match its hash")
    return view


class _Counted:
    """A stream that counts the bytes read through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        count = self._stream.readinto(buffer) or 0
        self.count += count
        return count


def read_header(stream: BinaryIO, label: str) -> dict:
    """Read and check the fixed prefix and JSON header of an object."""
    prefix = stream.read(12)
    if len(prefix) != 12 or prefix[:8] != MAGIC:
        raise ObjectError(f"object {label} is corrupt or not a git-theta object")
    (length,) = struct.unpack("<I", prefix[8:])
    if length > _MAX_HEADER:
        raise ObjectError(f"object {label} is corrupt (header too large)")
    try:
        header = json.loads(stream.read(length))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ObjectError(f"object {label} is corrupt (bad header)") from exc
    if not isinstance(header, dict) or not _valid_header(header):
        raise ObjectError(f"object {label} is corrupt or from a newer git-theta (unknown header); upgrade git-theta")
    return header


def _valid_header(header: dict) -> bool:
    def is_int(value: object, low: int) -> bool:
        return type(value) is int and value >= low

    if not is_int(header.get("size"), 0) or not isinstance(header.get("hash"), str):
        return False
    if header.get("codec") == "raw":
        return True
    group, block = header.get("group"), header.get("block")
    return (
        header.get("codec") == "zstd"
        and is_int(group, 1)
        and is_int(block, 1)
        and block % group == 0
        and block <= 1 << 30
    )


def _write_header(sink: Sink, header: dict) -> int:
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    sink.write(MAGIC + struct.pack("<I", len(body)) + body)
    return 12 + len(body)


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # A ZstdCompressor must not be shared between threads; keep one per thread and level.
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_checksum=True)
    return cache[level]


def _write_zstd(raw: memoryview, group: int, sink: Sink, level: int) -> int:
    cobj = _compressor(level).compressobj(size=len(raw))
    written = 0
    for start in range(0, len(raw), BLOCK):
        chunk = cobj.compress(_grouped(raw[start : start + BLOCK], group))
        if chunk:
            sink.write(chunk)
            written += len(chunk)
    tail = cobj.flush()
    sink.write(tail)
    return written + len(tail)


def _grouped(block: memoryview, group: int) -> bytes | memoryview:
    whole = len(block) // group * group
    if group == 1 or whole == 0:
        return block
    import numpy as np  # imported on first use: a checkout never needs it

    elements = np.frombuffer(block, dtype=np.uint8, count=whole).reshape(-1, group)
    grouped = np.empty((group, len(elements)), dtype=np.uint8)
    for column in range(group):  # one strided copy per byte column is ~3x faster than a transposed copy
        grouped[column] = elements[:, column]
    if whole == len(block):
        return grouped.data.cast("B")
    return grouped.tobytes() + bytes(block[whole:])


def _read_zstd(stream: BinaryIO, out: bytearray, size: int, group: int, block: int, label: str) -> None:
    buffer = bytearray(min(block, size))
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_size=READ_SIZE, read_across_frames=False)
        for start in range(0, size, block):
            length = min(block, size - start)
            _read_exact(reader, memoryview(buffer)[:length], label)
            _ungroup(buffer, length, out, start, group)
        if reader.read(1):  # also makes zstd reach the end of the frame and check its checksum
            raise ObjectError(f"object {label} is corrupt (more content than its header says)")
    except zstandard.ZstdError as exc:
        raise ObjectError(f"object {label} is corrupt ({exc})") from exc


def _ungroup(grouped: bytearray, length: int, out: bytearray, start: int, group: int) -> None:
    """Undo the byte grouping of ``grouped[:length]`` into ``out[start:start + length]``."""
    whole = length // group * group
    column = whole // group
    if column and (len(out) >= NUMPY_UNGROUP or "numpy" in sys.modules):
        _ungroup_numpy(grouped, whole, out, start, group)
    else:
        # bytearray's extended-slice assignment is a C loop: small checkouts skip numpy's import (~60 ms).
        with memoryview(grouped) as source:
            for index in range(group if column else 0):  # an empty extended slice would count as a resize
                out[start + index : start + whole : group] = source[index * column : (index + 1) * column]
    out[start + whole : start + length] = grouped[whole:length]


def _ungroup_numpy(grouped: bytearray, whole: int, out: bytearray, start: int, group: int) -> None:
    # numpy releases the GIL while copying, so large tensors decode in parallel on every core.
    import numpy as np

    columns = np.frombuffer(grouped, dtype=np.uint8, count=whole).reshape(group, -1)
    elements = np.frombuffer(out, dtype=np.uint8, count=whole, offset=start).reshape(-1, group)
    for index in range(group):
        elements[:, index] = columns[index]


def _read_exact(stream: BinaryIO, dest: memoryview, label: str) -> None:
    filled = 0
    while filled < len(dest):
        count = stream.readinto(dest[filled:])
        if not count:
            raise ObjectError(f"object {label} is truncated")
        filled += count
