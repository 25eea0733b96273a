"""The blocks of the ``streams`` codec: each byte stream of a block Huffman-coded on its own, or stored raw.

A block of ``n`` bytes of elements ``group`` bytes wide has ``group`` byte streams of ``c = n // group`` bytes each
(see bytegroup.py) and a tail of ``n - c * group`` bytes. Its stored form is

    group little-endian u32     the stored length of each stream
    the streams, in order       a stream of stored length c is raw; shorter, it is one zstd frame of c bytes
    the tail                    raw

Each stream is compressed with zstd settings that find almost no matches (fast strategy, minimum match of 7 bytes,
a 64-entry hash table), so zstd Huffman-codes its literals, 128 KiB at a time: the exponent stream of floating-point
weights has a peaked distribution and little repetition, which Huffman coding captures and LZ matching does not
improve (measured on all-MiniLM-L6-v2, it makes the stream larger). A stream that does not get smaller, like the
noisy low mantissa bytes, is stored raw and decodes without any work. This is ZipNN's scheme with zstd's Huffman
coder.

Whether a stream is compressed whole is first asked of a few windows spread over it: when not one of them gets
smaller, the stream is noise and is stored raw at once (about a third of the compression time of float32 weights went
to finding that out on whole streams). The answer depends on the bytes alone, so the same block is always stored
the same way.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from git_theta.storage.bytegroup import Writable, interleave, split_bytes
from git_theta.storage.errors import ObjectError
from git_theta.storage.zstd import decompress, stream_compressor

if TYPE_CHECKING:
    import zstandard


def encode_block(block: memoryview, group: int, signbit: bool) -> bytes:
    """Return the stored form of ``block``, elements of ``group`` bytes (the sign bit moved first when ``signbit``)."""
    *streams, tail = split_bytes(block, group, signbit, reuse=True)  # copied below, before the next block
    stored = [_compressed_or_raw(stream) for stream in streams]
    return b"".join([struct.pack(f"<{group}I", *map(len, stored)), *stored, tail])


def decode_block(
    stored: bytes, length: int, group: int, signbit: bool, out: Writable, start: int, tensor_size: int, label: str
) -> None:
    """Decode the stored form of a block of ``length`` bytes into ``out[start:start + length]``.

    Every length is checked against the block's before anything is allocated or copied.
    """
    column = length // group
    view = memoryview(stored)
    lengths = struct.unpack_from(f"<{group}I", view) if len(view) >= 4 * group else ()
    tail = length - column * group
    if len(lengths) != group or any(size > column for size in lengths) or 4 * group + sum(lengths) + tail != len(view):
        raise ObjectError(f"object {label} is corrupt (a block's stream table does not match its size)")
    streams, at = [], 4 * group
    for size in lengths:
        piece = view[at : at + size]
        streams.append(piece if size == column else decompress(piece, column, label, "a stream"))
        at += size
    interleave(streams, view[at:], out, start, group, tensor_size, signbit)


#: The windows a stream is tried on first: PROBES of PROBE bytes each, evenly spread. Each window is large enough
#: that the Huffman table's own size does not hide a small gain; together they are an eighth of the shortest stream
#: probed (PROBED bytes, a float32 stream of a 1 MiB block). Shorter streams are compressed whole at once.
PROBE, PROBES = 8 << 10, 4
PROBED = 8 * PROBE * PROBES


def _compressed_or_raw(stream: memoryview) -> bytes | memoryview:
    if not stream:
        return stream
    compressor = stream_compressor()
    if len(stream) >= PROBED and not _any_window_shrinks(stream, compressor):
        return stream
    frame = compressor.compress(stream)
    return frame if len(frame) < len(stream) else stream


def _any_window_shrinks(stream: memoryview, compressor: zstandard.ZstdCompressor) -> bool:
    step = len(stream) // PROBES
    return any(len(compressor.compress(stream[at : at + PROBE])) < PROBE for at in range(0, step * PROBES, step))
