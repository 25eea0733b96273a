"""zstd for the codecs: one context per thread, and ``zstandard`` imported only once a tensor is compressed or
decompressed (it imports ``platform``, ~3 ms of a filter start whose tensors are all too small to compress)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from git_theta.storage.errors import ObjectError

if TYPE_CHECKING:
    import zstandard

_local = threading.local()


def compressor(level: int) -> zstandard.ZstdCompressor:
    """This thread's compressor at ``level``, with frame checksums (the ``zstd`` codec)."""
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        import zstandard

        cache[level] = zstandard.ZstdCompressor(level=level, write_checksum=True)
    return cache[level]


def stream_compressor() -> zstandard.ZstdCompressor:
    """This thread's compressor of byte streams (the ``streams`` codec): settings that make zstd close to a plain
    Huffman coder. They are part of the format: they fix what encoding writes."""
    if not hasattr(_local, "stream_compressor"):
        import zstandard

        parameters = zstandard.ZstdCompressionParameters(
            strategy=zstandard.STRATEGY_FAST,
            min_match=7,
            window_log=17,
            hash_log=6,
            chain_log=6,
            search_log=1,
            target_length=0,
            write_content_size=1,
            write_checksum=1,
            threads=0,
        )
        _local.stream_compressor = zstandard.ZstdCompressor(compression_params=parameters)
    return _local.stream_compressor


def decompress(frame: bytes | memoryview, expected: int, label: str, part: str) -> bytes:
    """One zstd frame of ``expected`` bytes, decompressed; else ObjectError naming the object (``label``) and the
    ``part`` of it (a block, a stream) that is corrupt. The size the frame declares is checked before zstd allocates
    it: a corrupt frame header must not exhaust memory."""
    import zstandard

    try:
        if zstandard.get_frame_parameters(frame).content_size != expected:
            raise ObjectError(f"object {label} is corrupt ({part} has the wrong size)")
        data = _decompressor().decompress(frame, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise ObjectError(f"object {label} is corrupt ({exc})") from exc
    if len(data) != expected:
        raise ObjectError(f"object {label} is corrupt ({part} has the wrong size)")
    return data


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "decompressor"):
        import zstandard

        _local.decompressor = zstandard.ZstdDecompressor()
    return _local.decompressor
