"""The self-describing, lossless format of one stored tensor object (docs/metadata-format.md).

    offset 0   8 bytes   magic b"GTOBJ" + b"\\x00" + version (1) + b"\\x00"
    offset 8   4 bytes   little-endian length H of the header
    offset 12  H bytes   UTF-8 JSON header, e.g.
                         {"codec": "zstd", "group": 4, "block": 1048576, "size": 1536, "hash": "sha256:<hex>"}
    then       payload

``codec`` is ``raw`` (payload = the tensor's bytes), ``zstd`` or ``streams``. Both of the latter cut the tensor into
blocks of ``block`` bytes, each *byte-grouped* (all first bytes of the block's elements, then all second bytes, and so
on; ``group`` is the element width). ``zstd`` (written by git-theta up to 0.3) compresses each grouped block as one zstd
frame, with content size and checksum. ``streams`` (written since) stores each byte stream of a block on its own,
Huffman-coded or raw (streams.py); with ``"signbit": 1`` the sign bit of each 2- or 4-byte element is moved out of the
exponent's byte first, so that a float's exponent fills one stream (bytegroup.py). The blocks follow one another;
after them comes a table of their stored sizes (one little-endian u32 per block), so that the blocks of a large tensor
can be decoded in parallel. Grouping puts the slowly varying sign/exponent bytes of floats side by side, which is what
makes weights compress (the idea behind ZipNN). Encoding is deterministic, so equal tensors give equal objects.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol, TypeGuard

from git_theta.dtypes import ITEMSIZE, itemsize, nbytes
from git_theta.pipeline import Tasks, ordered_map
from git_theta.storage.bytegroup import SIGNBIT_WIDTHS, Writable, group_bytes, tensor_buffer, ungroup_bytes
from git_theta.storage.errors import ObjectError
from git_theta.storage.streams import decode_block, encode_block
from git_theta.storage.zstd import compressor, decompress

MAGIC = b"GTOBJ\x00\x01\x00"
BLOCK = 1 << 20
DEFAULT_LEVEL = 1
#: The codec of new compressed objects; ``zstd`` objects are still read, and written on request (benchmarks, tests).
DEFAULT_CODEC = "streams"
CODECS = ("zstd", "streams")
#: Below this size compression rarely pays for its frame header; such tensors are stored raw.
MIN_COMPRESS = 512
#: Frames of one tensor compressed or decoded at once (a few MiB of memory).
PARALLEL_FRAMES = 4
_MAX_HEADER = 1 << 16

#: Parses a header (decoded as UTF-8 first: ``json.loads`` would sniff the encoding of every object's header).
_json_object = json.JSONDecoder().decode

#: One stretch of an object: ``(offset in object, stored length, start in payload, decoded length, byte group)``.
Block = tuple[int, int, int, int, int]


class Sink(Protocol):
    """Where an encoded object is written (an object-store writer)."""

    def write(self, data: bytes | memoryview) -> object: ...

    def reset(self) -> None: ...


class MemorySink(io.BytesIO):
    """An in-memory sink for small objects."""

    def reset(self) -> None:
        self.seek(0)
        self.truncate()


def encode(
    raw: memoryview,
    raw_hash: str,
    group: int,
    sink: Sink,
    level: int = DEFAULT_LEVEL,
    executor: Tasks | None = None,
    codec: str = DEFAULT_CODEC,
) -> str:
    """Write ``raw`` as an object to ``sink``; return the codec used (raw when compression does not help).

    With an ``executor``, the blocks of a large tensor are compressed in parallel. ``level`` applies to ``zstd``.
    """
    signbit = codec == "streams" and group in SIGNBIT_WIDTHS
    fields = {"group": group, "signbit": 1} if signbit else {"group": group}
    return _encode([(raw, group)], {"hash": raw_hash}, fields, sink, _Coder(codec, level, signbit), executor)


def encode_update(
    parts: list[tuple[str, str, tuple[int, ...], memoryview]],
    tensor_hash: str,
    update: dict[str, Any],
    sink: Sink,
    level: int = DEFAULT_LEVEL,
    executor: Tasks | None = None,
    codec: str = DEFAULT_CODEC,
) -> str:
    """Write an update object: named arrays ``(name, dtype, shape, bytes)`` that turn a base tensor into this one.

    ``update`` holds the update type, the hash of the base tensor and the type's parameters; the object's ``hash``
    is the hash of the tensor it rebuilds, so the result of applying it can be verified.
    """
    described = {**update, "parts": [[name, dtype, list(shape)] for name, dtype, shape, _ in parts]}
    payload = [(data, itemsize(dtype)) for _, dtype, _, data in parts]
    return _encode(payload, {"hash": tensor_hash, "update": described}, {}, sink, _Coder(codec, level), executor)


def sample_starts(size: int, blocks: int = 4) -> list[int]:
    """Where the blocks of a sample of ``size`` bytes start: all blocks, or ``blocks`` evenly spaced ones."""
    count = -(-size // BLOCK)
    if count <= blocks:
        return [BLOCK * index for index in range(count)]
    return [BLOCK * (index * (count - 1) // (blocks - 1)) for index in range(blocks)]


def sampled_size(raw: memoryview, group: int, level: int = DEFAULT_LEVEL, blocks: int = 4, dense: bool = False) -> int:
    """Estimate the compressed size of ``raw`` by compressing ``blocks`` evenly spaced blocks of it.

    ``raw`` may be anything with a length whose ``BLOCK``-aligned slices are bytes (a delta computed on demand);
    ``dense`` when it would be stored as a tensor (whose sign bits may be moved), not as an update's part.
    """
    starts = sample_starts(len(raw), blocks)
    coder = _Coder(DEFAULT_CODEC, level, dense and group in SIGNBIT_WIDTHS)
    sample = sum(len(coder.compress(raw[at : at + BLOCK], group)) for at in starts)
    sampled = sum(min(BLOCK, len(raw) - at) for at in starts)
    return sample * len(raw) // sampled if sampled else 0


def _encode(
    parts: list[tuple[memoryview, int]],
    header: dict[str, Any],
    coded_header: dict[str, Any],
    sink: Sink,
    coder: _Coder,
    executor: Tasks | None,
) -> str:
    size = sum(len(data) for data, _ in parts)
    if size >= MIN_COMPRESS:
        written = _write_header(sink, {**header, **coded_header, "codec": coder.codec, "block": BLOCK, "size": size})
        sizes = []
        for data, group in parts:
            for frame in _compressed_frames(data, group, coder, executor):
                sink.write(frame)
                sizes.append(len(frame))
        table = struct.pack(f"<{len(sizes)}I", *sizes)
        sink.write(table)
        if written + sum(sizes) + len(table) < size + 64:
            return coder.codec
        sink.reset()
    _write_header(sink, {**header, "codec": "raw", "size": size})
    for data, _ in parts:
        for start in range(0, len(data), BLOCK):  # a block at a time: ``data`` may compute its blocks on demand
            sink.write(data[start : start + BLOCK])
    return "raw"


def decode(
    stream: BinaryIO,
    tensor_hash: str,
    tensor_size: int,
    object_size: int,
    label: str,
    *,
    executor: Tasks | None = None,
) -> memoryview:
    """Read one object from the seekable ``stream`` and return the tensor's exact bytes, checked for corruption.

    ``tensor_hash``, ``tensor_size`` and ``object_size`` are what the metadata says. The decoded tensor is always
    compared with its SHA-256: zstd's frame checksums cover each block's content but not the header that says how
    to ungroup it. With an ``executor``, the blocks of a large tensor are decoded in parallel.
    """
    reader = ObjectReader(stream, tensor_hash, tensor_size, object_size, label)
    return read_payload(reader, executor=executor)


def read_payload(reader: ObjectReader, *, executor: Tasks | None = None) -> memoryview:
    """Decode all of an opened object's payload; see ``decode``.

    A dense object is checked against the tensor's hash here; an update's payload is checked through the tensor it
    rebuilds.
    """
    out = tensor_buffer(reader.size)
    if executor is None or len(reader.blocks) <= 1:
        for block in reader.blocks:
            reader.read_block(block, out)
    else:
        for _ in ordered_map(executor, lambda block: reader.read_block(block, out), reader.blocks, PARALLEL_FRAMES):
            pass
    if reader.update is None:
        reader.check_hash(hashlib.sha256(out))
    return memoryview(out)


class ObjectReader:
    """An object opened for reading, its header and layout checked; its blocks decode independently, from any thread.

    The decoded *payload* is the tensor itself for a dense object, or the update's parts one after the other.
    """

    def __init__(self, stream: BinaryIO, tensor_hash: str, tensor_size: int, object_size: int, label: str) -> None:
        self.label, self._stream, self._lock = label, stream, threading.Lock()
        self._fd = _file_descriptor(stream)
        self.header = read_header(stream, label)
        payload = stream.tell()  # the payload follows the header
        self.update: dict[str, Any] | None = self.header.get("update")
        self.size = self.header["size"]
        if self.header["hash"] != tensor_hash or not _plausible_size(self.size, self.update, tensor_size):
            raise ObjectError(f"object {label} holds a different tensor than the metadata expects")
        actual = stream.seek(0, io.SEEK_END)
        if actual != object_size:
            state = "truncated" if actual < object_size else "corrupt (longer than recorded)"
            raise ObjectError(f"object {label} is {state}: {actual} bytes, expected {object_size}")
        self.codec = self.header["codec"]
        self.signbit = self.header.get("signbit") == 1
        if self.codec == "raw":
            if object_size - payload != self.size:
                raise ObjectError(f"object {label} is corrupt (its size does not match its header)")
            self.blocks = [
                (payload + start, min(BLOCK, self.size - start), start, min(BLOCK, self.size - start), 1)
                for start in range(0, self.size, BLOCK)
            ]
        else:
            self.blocks = _frame_table(stream, payload, object_size, self.header["block"], self.parts(), label)

    def parts(self) -> list[tuple[str, str, tuple[int, ...], int, int]]:
        """The payload's parts: ``(name, dtype, shape, nbytes, byte group)``; a dense object has one, unnamed."""
        if self.update is None:
            return [("", "", (), self.size, self.header.get("group", 1))]
        return [
            (name, dtype, tuple(shape), nbytes(dtype, shape), itemsize(dtype))
            for name, dtype, shape in self.update["parts"]
        ]

    def read_block(self, block: Block, out: Writable | None = None) -> memoryview:
        """Decode one of ``blocks`` into ``out`` at its place in the tensor, or into a new buffer; return the bytes."""
        offset, length, start, expected, group = block
        stored = self._read(offset, length)
        if len(stored) != length:
            raise ObjectError(f"object {self.label} is truncated")
        if self.codec == "raw":
            data = stored
        else:
            target, at = (out, start) if out is not None else (tensor_buffer(expected), 0)
            if self.codec == "streams":
                decode_block(stored, expected, group, self.signbit, target, at, self.size, self.label)
            else:
                grouped = decompress(stored, expected, self.label, "a block")
                ungroup_bytes(grouped, expected, target, at, group, self.size)
            return memoryview(target)[at : at + expected]
        if out is None:
            return memoryview(data)
        out[start : start + length] = data
        return memoryview(out)[start : start + length]

    def _read(self, offset: int, length: int) -> bytes:
        if self._fd is not None:  # straight from the file, no copy through the stream's buffer, no seek to share
            return os.pread(self._fd, length, offset)
        with self._lock:
            self._stream.seek(offset)
            return self._stream.read(length)

    def check_hash(self, digest: hashlib._Hash) -> None:
        """Compare the SHA-256 of the decoded tensor with the tensor's hash."""
        if "sha256:" + digest.hexdigest() != self.header["hash"]:
            raise ObjectError(f"object {self.label} is corrupt: its content does not match its hash")

    def close(self) -> None:
        """Close the underlying stream."""
        self._stream.close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _file_descriptor(stream: BinaryIO) -> int | None:
    """The file ``stream`` reads, where blocks can be read with ``os.pread`` (not on Windows, not in memory)."""
    if isinstance(stream, io.BytesIO) or not hasattr(os, "pread"):  # a piece of a pack; Windows
        return None
    try:
        return stream.fileno()
    except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
        return None


def read_header(stream: BinaryIO, label: str) -> dict:
    """Read and check the fixed prefix and JSON header of an object."""
    prefix = stream.read(12)
    if len(prefix) != 12 or prefix[:8] != MAGIC:
        raise ObjectError(f"object {label} is corrupt or not a git-theta object")
    (length,) = struct.unpack("<I", prefix[8:])
    if length > _MAX_HEADER:
        raise ObjectError(f"object {label} is corrupt (header too large)")
    body = stream.read(length)
    if len(body) != length:
        raise ObjectError(f"object {label} is truncated (in its header)")
    try:
        header = _json_object(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ObjectError(f"object {label} is corrupt (bad header)") from exc
    if not isinstance(header, dict) or not _valid_header(header):
        raise ObjectError(f"object {label} is corrupt or from a newer git-theta (unknown header); upgrade git-theta")
    return header


def _valid_header(header: dict) -> bool:
    def is_int(value: object, low: int) -> TypeGuard[int]:
        return type(value) is int and value >= low

    if not is_int(header.get("size"), 0) or not isinstance(header.get("hash"), str):
        return False
    if "update" in header and not _valid_update(header["update"]):
        return False
    if "signbit" in header and not (
        header["signbit"] == 1 and type(header["signbit"]) is int and header.get("codec") == "streams"
    ):
        return False
    if header.get("codec") == "raw":
        return True
    # A dense object names its byte group; an update object's parts imply theirs.
    group, block = header.get("group", 1) if "update" in header else header.get("group"), header.get("block")
    return (
        header.get("codec") in CODECS
        and is_int(group, 1)
        and ("signbit" not in header or ("update" not in header and group in SIGNBIT_WIDTHS))
        and is_int(block, 1)
        and block % group == 0
        and block % 8 == 0
        and block <= 1 << 30
    )


def _valid_update(update: object) -> bool:
    if not isinstance(update, dict) or not isinstance(update.get("type"), str):
        return False
    if not isinstance(update.get("base"), str) or not isinstance(update.get("params", {}), dict):
        return False
    parts = update.get("parts")
    return isinstance(parts, list) and all(
        isinstance(part, list)
        and len(part) == 3
        and isinstance(part[0], str)
        and part[1] in ITEMSIZE
        and isinstance(part[2], list)
        and all(type(dim) is int and dim >= 0 for dim in part[2])
        for part in parts
    )


def _header_bytes(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _write_header(sink: Sink, header: dict) -> int:
    body = _header_bytes(header)
    sink.write(MAGIC + struct.pack("<I", len(body)) + body)
    return 12 + len(body)


class _Coder:
    """How the blocks of a new object are compressed: the codec, its zstd level (``zstd``), moved sign bits."""

    def __init__(self, codec: str, level: int, signbit: bool = False) -> None:
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}")
        self.codec, self.level, self.signbit = codec, level, signbit

    def compress(self, block: memoryview, group: int) -> bytes:
        """The stored form of one block of elements ``group`` bytes wide."""
        if self.codec == "streams":
            return encode_block(block, group, self.signbit and group in SIGNBIT_WIDTHS)
        return compressor(self.level).compress(group_bytes(block, group))


def _compressed_frames(raw: memoryview, group: int, coder: _Coder, executor: Tasks | None) -> Iterator[bytes]:
    def compress(start: int) -> bytes:
        return coder.compress(raw[start : start + BLOCK], group)

    starts = range(0, len(raw), BLOCK)
    if executor is None or len(starts) == 1:
        return map(compress, starts)
    return ordered_map(executor, compress, starts, window=PARALLEL_FRAMES)


def _frame_table(
    stream: BinaryIO, payload: int, object_size: int, block: int, parts: list[tuple], label: str
) -> list[Block]:
    """Return every frame as a Block, from the table of compressed sizes at the end of the object."""
    layout: list[tuple[int, int, int]] = []  # (start in payload, decoded length, byte group) of each frame
    start = 0
    for *_, size, group in parts:
        layout.extend((start + at, min(block, size - at), group) for at in range(0, size, block))
        start += size
    count = len(layout)
    table_at = object_size - 4 * count
    stream.seek(table_at)
    table = stream.read(4 * count)
    sizes = struct.unpack(f"<{count}I", table) if len(table) == 4 * count else ()
    if table_at < payload or len(sizes) != count or sum(sizes) != table_at - payload:
        raise ObjectError(f"object {label} is corrupt (its frame table does not match its size)")
    frames, offset = [], payload
    for (at, length, group), stored in zip(layout, sizes, strict=True):
        frames.append((offset, stored, at, length, group))
        offset += stored
    return frames


def _plausible_size(size: int, update: dict[str, Any] | None, tensor_size: int) -> bool:
    if update is None:
        return size == tensor_size
    # An update's parts are never much larger than the tensor; a header claiming more is corrupt or hostile.
    described = sum(nbytes(dtype, shape) for _, dtype, shape in update["parts"])
    return described == size <= 4 * tensor_size + (1 << 20)
