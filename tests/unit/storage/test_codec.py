"""The tensor object codec: exact round trips, byte grouping, the raw fallback, and corruption always caught.

New objects use the ``streams`` codec; ``zstd`` objects (written up to 0.3) must still decode, so both are tested.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from git_theta.storage import codec
from git_theta.storage.codec import BLOCK, CODECS, DEFAULT_CODEC, MAGIC, MIN_COMPRESS
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import MemoryObjectStore
from tests.unit.support import PROPERTY

GROUPS = [1, 2, 4, 8, 16]
LABEL = "abc123 (tensor 'w' of m.safetensors)"
GOLDEN = Path(__file__).parents[2] / "golden"


def digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def encode(raw: bytes, group: int, codec_name: str = DEFAULT_CODEC) -> tuple[bytes, str]:
    """Encode through a real store writer; return the object's bytes and the codec chosen."""
    store = MemoryObjectStore()
    writer = store.writer()
    used = codec.encode(memoryview(raw), digest(raw), group, writer, codec=codec_name)
    oid, size = writer.commit()
    assert len(store.objects[oid]) == size
    return store.objects[oid], used


def decode(obj: bytes, raw: bytes) -> bytearray:
    return codec.decode(io.BytesIO(obj), digest(raw), len(raw), len(obj), LABEL)


def header_of(obj: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<I", obj[8:12])
    return json.loads(obj[12 : 12 + length]), obj[12 + length :]


def smooth(size: int, seed: int = 0) -> bytes:
    """Compressible bytes: float32 weights near 1.0 plus a ragged tail."""
    rng = np.random.default_rng(seed)
    weights = (1 + rng.standard_normal(size // 4 + 1) * 1e-3).astype("<f4").tobytes()
    return weights[:size]


# --- round trips ---------------------------------------------------------------------------------------------------


@PROPERTY
@given(raw=st.binary(max_size=5000), group=st.sampled_from(GROUPS), codec_name=st.sampled_from(CODECS))
def test_round_trip_arbitrary_bytes(raw: bytes, group: int, codec_name: str) -> None:
    obj, used = encode(raw, group, codec_name)
    assert decode(obj, raw) == raw
    assert len(obj) <= len(encode_raw_only(raw))  # never worse than storing the bytes as they are
    if len(raw) < MIN_COMPRESS:
        assert used == "raw"


@PROPERTY
@given(
    size=st.integers(0, 20000),
    seed=st.integers(0, 2**32 - 1),
    group=st.sampled_from(GROUPS),
    codec_name=st.sampled_from(CODECS),
)
def test_round_trip_compressible(size: int, seed: int, group: int, codec_name: str) -> None:
    raw = smooth(size, seed)
    obj, used = encode(raw, group, codec_name)
    assert decode(obj, raw) == raw
    if size >= 4096:
        assert used == codec_name and len(obj) < len(raw)


def encode_raw_only(raw: bytes) -> bytes:
    body = json.dumps({"codec": "raw", "hash": digest(raw), "size": len(raw)}, sort_keys=True, separators=(",", ":"))
    return MAGIC + struct.pack("<I", len(body)) + body.encode() + raw


@pytest.mark.parametrize("codec_name", CODECS)
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize(
    "size", [0, 1, MIN_COMPRESS - 1, MIN_COMPRESS, BLOCK - 1, BLOCK, BLOCK + 3, 2 * BLOCK + 5], ids=str
)
def test_block_boundaries(size: int, group: int, codec_name: str) -> None:
    raw = smooth(size, seed=size)
    obj, used = encode(raw, group, codec_name)
    assert decode(obj, raw) == raw
    if size < MIN_COMPRESS:
        assert used == "raw"
    elif size >= 4096:
        assert used == codec_name
        assert header_of(obj)[0]["group"] == group


@pytest.mark.parametrize("size", [MIN_COMPRESS, BLOCK - 1, BLOCK + 3])
def test_incompressible_data_falls_back_to_raw(size: int) -> None:
    raw = np.random.default_rng(size).bytes(size)
    obj, used = encode(raw, 4)
    assert used == "raw"
    header, payload = header_of(obj)
    assert header == {"codec": "raw", "hash": digest(raw), "size": size}
    assert payload == raw
    assert decode(obj, raw) == raw


@pytest.mark.parametrize("group", [2, 4, 8, 16])
def test_zstd_payload_is_byte_grouped_per_block(group: int) -> None:
    raw = smooth(BLOCK + 4 * group + 3, seed=group)
    obj, used = encode(raw, group, "zstd")
    assert used == "zstd"
    header, payload = header_of(obj)
    assert header == {"block": BLOCK, "codec": "zstd", "group": group, "hash": digest(raw), "size": len(raw)}
    count = -(-len(raw) // BLOCK)
    sizes = struct.unpack(f"<{count}I", payload[-4 * count :])
    assert sum(sizes) == len(payload) - 4 * count
    content, offset = b"", 0
    for length in sizes:  # one independent, checksummed zstd frame per block
        frame = payload[offset : offset + length]
        assert zstandard.get_frame_parameters(frame).has_checksum
        content += zstandard.ZstdDecompressor().decompress(frame)
        offset += length
    expected = b""
    for start in range(0, len(raw), BLOCK):
        block = raw[start : start + BLOCK]
        whole = len(block) // group * group
        columns = np.frombuffer(block[:whole], dtype=np.uint8).reshape(-1, group).T
        expected += columns.tobytes() + block[whole:]
    assert content == expected


@pytest.mark.parametrize("group", [1, 2, 4, 8, 16])
def test_streams_payload_is_byte_streams_per_block(group: int) -> None:
    """The layout of docs/metadata-format.md, rebuilt from its description: per block, a u32 stored length per byte
    stream, then the streams (raw when of full length, else one checksummed zstd frame), then the tail."""
    raw = smooth(BLOCK + 4 * group + 3, seed=group)
    obj, used = encode(raw, group, "streams")
    assert used == "streams"
    header, payload = header_of(obj)
    signbit = group in (2, 4)
    expected_header = {"block": BLOCK, "codec": "streams", "group": group, "hash": digest(raw), "size": len(raw)}
    assert header == ({**expected_header, "signbit": 1} if signbit else expected_header)
    count = -(-len(raw) // BLOCK)
    sizes = struct.unpack(f"<{count}I", payload[-4 * count :])
    assert sum(sizes) == len(payload) - 4 * count
    offset, kinds = 0, set()
    for index, stored in enumerate(sizes):
        block = raw[index * BLOCK : (index + 1) * BLOCK]
        column, frame = len(block) // group, payload[offset : offset + stored]
        lengths = struct.unpack_from(f"<{group}I", frame)
        at, streams = 4 * group, []
        for length in lengths:
            piece = frame[at : at + length]
            if length == column:
                kinds.add("raw")
                streams.append(piece)
            else:
                assert zstandard.get_frame_parameters(piece).has_checksum
                kinds.add("zstd")
                streams.append(zstandard.ZstdDecompressor().decompress(piece))
            at += length
        assert frame[at:] == block[column * group :]  # the tail, raw
        columns = np.frombuffer(block[: column * group], dtype=np.uint8).reshape(-1, group).T.copy()
        if signbit:  # the sign bit trades places with the exponent's lowest bit
            hi, lo = columns[-1].copy(), columns[-2].copy()
            columns[-1], columns[-2] = (hi << 1) | (lo >> 7), (lo & 0x7F) | (hi & 0x80)
        assert streams == [column_bytes.tobytes() for column_bytes in columns]
        offset += stored
    assert kinds == {"raw", "zstd"} or group == 1  # the exponent streams compress, the low mantissa bytes do not


@pytest.mark.parametrize("codec_name", CODECS)
def test_encoding_is_deterministic(codec_name: str) -> None:
    raw = smooth(300_000)
    assert encode(raw, 4, codec_name) == encode(raw, 4, codec_name)


def test_object_headers_golden() -> None:
    """Pins the object format (docs/metadata-format.md); regenerate with UPDATE_GOLDEN=1 if it changes on purpose."""
    from tests.unit.test_metadata import check_golden

    lines = []
    for name, raw, group in [("raw", bytes(range(40)), 4), ("zstd", bytes(4096), 2), ("streams", bytes(4096), 2)]:
        obj, used = encode(raw, group, name if name in CODECS else DEFAULT_CODEC)
        header, _ = header_of(obj)
        lines.append(f"{name}: {obj[:12].hex()} {json.dumps(header, sort_keys=True, separators=(',', ':'))}")
    check_golden("object_headers.txt", ("\n".join(lines) + "\n").encode())


# --- corruption ----------------------------------------------------------------------------------------------------

SAMPLES = {
    "raw": (np.random.default_rng(0).bytes(512), 1),
    "zstd": (smooth(3000, seed=1), 4),
    "streams": (smooth(3000, seed=1), 4),
}


def assert_object_error(
    obj: bytes, raw: bytes, expected_hash: str | None = None, object_size: int | None = None
) -> ObjectError:
    with pytest.raises(ObjectError) as excinfo:
        codec.decode(io.BytesIO(obj), expected_hash or digest(raw), len(raw), object_size or len(obj), LABEL)
    message = str(excinfo.value)
    assert "\n" not in message and LABEL in message, message
    return excinfo.value


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_truncated_object(kind: str) -> None:
    raw, group = SAMPLES[kind]
    obj, used = encode(raw, group, kind if kind in CODECS else DEFAULT_CODEC)
    assert used == kind
    for cut in range(len(obj)):
        assert_object_error(obj[:cut], raw, object_size=len(obj))


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_flipped_payload_byte(kind: str) -> None:
    raw, group = SAMPLES[kind]
    obj, _ = encode(raw, group, kind if kind in CODECS else DEFAULT_CODEC)
    start = len(obj) - len(header_of(obj)[1])
    rejected = 0
    for position in range(start, len(obj)):
        for mask in (0x01, 0x80, 0xFF):
            corrupt = bytearray(obj)
            corrupt[position] ^= mask
            if kind == "raw":
                assert_object_error(bytes(corrupt), raw)
                continue
            # A few bits of a zstd frame do not change its content (the last-block flag, which is never reached
            # because decoding stops at `size` bytes; unused bitstream bits): the hash proves the result exact.
            try:
                result = codec.decode(io.BytesIO(bytes(corrupt)), digest(raw), len(raw), len(corrupt), LABEL)
            except ObjectError as exc:
                assert "\n" not in str(exc) and LABEL in str(exc)
                rejected += 1
            else:
                assert result == raw
    assert rejected >= 0.95 * 3 * (len(obj) - start) or kind == "raw"


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_flipped_header_byte(kind: str) -> None:
    raw, group = SAMPLES[kind]
    obj, _ = encode(raw, group, kind if kind in CODECS else DEFAULT_CODEC)
    end = len(obj) - len(header_of(obj)[1])
    for position in range(end):
        for mask in (0x01, 0x80, 0xFF):
            corrupt = bytearray(obj)
            corrupt[position] ^= mask
            try:
                result = codec.decode(io.BytesIO(bytes(corrupt)), digest(raw), len(raw), len(corrupt), LABEL)
            except ObjectError as exc:
                assert "\n" not in str(exc)
            else:
                assert result == raw  # a harmless flip (e.g. a larger block size) may still decode exactly


@pytest.mark.parametrize(
    "prefix",
    [
        b"",
        b"GTOB",
        b"XTOBJ\x00\x01\x00",
        b"GTOBJ\x00\x02\x00",
        b"PK\x03\x04\x00\x00\x00\x00",
        b"version https://git-lfs",
    ],
    ids=["empty", "short", "bad magic", "future version", "zip", "lfs pointer"],
)
def test_bad_magic(prefix: bytes) -> None:
    raw = bytes(10)
    obj, _ = encode(raw, 1)
    assert_object_error(prefix + obj[len(prefix) :] if len(prefix) >= 8 else prefix, raw)


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_object_of_another_tensor(kind: str) -> None:
    raw, group = SAMPLES[kind]
    obj, _ = encode(raw, group, kind if kind in CODECS else DEFAULT_CODEC)
    other = raw[:-1] + bytes([raw[-1] ^ 1])
    assert_object_error(obj, raw, expected_hash=digest(other))


def crafted(header: object, payload: bytes) -> bytes:
    body = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(body)) + body + payload


RAW = b"abcd" * 10


def test_header_claims_the_hash_but_content_differs() -> None:
    assert_object_error(crafted({"codec": "raw", "size": len(RAW), "hash": digest(RAW)}, b"x" * len(RAW)), RAW)


@pytest.mark.parametrize(
    "header",
    [
        {"codec": "lz77", "size": len(RAW), "hash": digest(RAW)},
        {"codec": "zstd", "group": 0, "block": BLOCK, "size": len(RAW), "hash": digest(RAW)},
        {"codec": "zstd", "group": 3, "block": BLOCK, "size": len(RAW), "hash": digest(RAW)},
        {"codec": "zstd", "group": 4, "block": BLOCK, "size": len(RAW), "hash": digest(RAW)},  # payload is not zstd
        {"size": len(RAW)},
        [len(RAW)],
        "not an object",
    ],
    ids=["unknown codec", "group 0", "group not dividing block", "payload not zstd", "no hash", "list", "string"],
)
def test_malformed_header(header: object) -> None:
    assert_object_error(crafted(header, RAW), RAW)


@pytest.mark.parametrize(
    "header",
    [
        {"size": len(RAW), "hash": digest(RAW)},
        {"codec": "zstd", "block": BLOCK, "size": len(RAW), "hash": digest(RAW)},
        {"codec": "zstd", "group": 4, "size": len(RAW), "hash": digest(RAW)},
        {"codec": "zstd", "group": "x", "block": BLOCK, "size": len(RAW), "hash": digest(RAW)},
        {"codec": "raw", "size": -1, "hash": digest(RAW)},
        {"codec": "raw", "size": 1.5, "hash": digest(RAW)},
        {"codec": "raw", "size": "40", "hash": digest(RAW)},
        {"codec": "raw", "size": 1 << 60, "hash": digest(RAW)},
        {"codec": "streams", "block": BLOCK, "size": len(RAW), "hash": digest(RAW)},
        {"codec": "zstd", "group": 4, "signbit": 1, "block": BLOCK, "size": len(RAW), "hash": digest(RAW)},
        {"codec": "streams", "group": 8, "signbit": 1, "block": BLOCK, "size": len(RAW), "hash": digest(RAW)},
        {"codec": "streams", "group": 4, "signbit": 2, "block": BLOCK, "size": len(RAW), "hash": digest(RAW)},
        {"codec": "streams", "group": 4, "signbit": True, "block": BLOCK, "size": len(RAW), "hash": digest(RAW)},
        {"codec": "raw", "signbit": 1, "size": len(RAW), "hash": digest(RAW)},
    ],
    ids=[
        "no codec",
        "no group",
        "no block",
        "group not a number",
        "negative size",
        "float size",
        "string size",
        "huge size",
        "streams without group",
        "signbit in zstd",
        "signbit of 8-byte elements",
        "signbit not 1",
        "signbit a boolean",
        "signbit in raw",
    ],
)
def test_header_fields_are_validated(header: dict) -> None:
    assert_object_error(crafted(header, RAW), RAW)


def test_header_too_large() -> None:
    obj = MAGIC + struct.pack("<I", (1 << 16) + 1) + b"{" + b" " * (1 << 16)
    assert_object_error(obj, RAW)


# --- golden objects: every codec's objects decode the same forever ----------------------------------------------

#: Whole objects as git-theta wrote them: ``zstd`` as up to 0.3, ``streams`` since (with and without the sign bit
#: moved). Decoding them must give the exact tensor; they are never rewritten unless UPDATE_GOLDEN=1.
GOLDEN_OBJECTS = {
    "object-zstd-f32.bin": ("zstd", 4),
    "object-streams-f32.bin": ("streams", 4),
    "object-streams-bf16.bin": ("streams", 2),
    "object-streams-i64.bin": ("streams", 8),
}


def golden_tensor(group: int) -> bytes:
    """Weight-like values from an integer recurrence (no RNG or libm whose output could change), 1500 elements and
    a ragged tail: float32 for group 4, its top halves (bfloat16) for group 2, small int64 for group 8."""
    state, ints = 12345, []
    for _ in range(1500):
        state = (state * 1103515245 + 12345) % 2**31
        ints.append(state % 20001 - 10000)
    values = np.array(ints, dtype=np.int64)
    if group == 8:
        return values.astype("<i8").tobytes() + b"\x01\x02\x03"
    floats = values.astype(np.float32) * np.float32(2e-6)
    if group == 2:
        return (floats.view("<u4") >> 16).astype("<u2").tobytes() + b"\x01"
    return floats.astype("<f4").tobytes() + b"\x01\x02\x03"


@pytest.mark.parametrize("name", list(GOLDEN_OBJECTS))
def test_golden_objects_decode(name: str) -> None:
    import os

    codec_name, group = GOLDEN_OBJECTS[name]
    raw = golden_tensor(group)
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_bytes(encode(raw, group, codec_name)[0])
    obj = path.read_bytes()
    assert header_of(obj)[0]["codec"] == codec_name
    assert decode(obj, raw) == raw
    assert len(obj) < len(raw)


# --- the streams codec's block layout, crafted ---------------------------------------------------------------------


def streams_object(block: bytes, size: int, group: int = 4) -> bytes:
    """An object of the ``streams`` codec holding one block stored as ``block``, for a tensor of ``size`` bytes."""
    header = {"block": BLOCK, "codec": "streams", "group": group, "hash": digest(RAW), "size": size}
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()  # as written: compact, sorted
    return MAGIC + struct.pack("<I", len(body)) + body + block + struct.pack("<I", len(block))


@pytest.mark.parametrize(
    "lengths",
    [[10, 10, 10, 11], [10, 10, 10, 9], [0, 0, 0, 0], [10, 10, 10], [1 << 31, 0, 0, 0]],
    ids=["stream longer than its column", "short of the block", "streams missing", "table cut", "huge length"],
)
def test_a_stream_table_that_does_not_match_the_block_is_refused(lengths: list[int]) -> None:
    payload = struct.pack(f"<{len(lengths)}I", *lengths) + RAW[: 4 * 10]
    assert_object_error(streams_object(payload, len(RAW)), RAW)


def test_raw_streams_of_another_tensor_are_refused() -> None:
    streams = b"".join(RAW[index::4] for index in range(4))
    assert_object_error(streams_object(struct.pack("<4I", 10, 10, 10, 10) + streams[::-1], len(RAW)), RAW)
    exact = streams_object(struct.pack("<4I", 10, 10, 10, 10) + streams, len(RAW))
    assert codec.decode(io.BytesIO(exact), digest(RAW), len(RAW), len(exact), LABEL) == RAW


def test_a_stream_frame_declaring_another_size_is_refused_before_allocation() -> None:
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(bytes(1 << 20))  # declares 1 MiB, not 10 bytes
    streams = b"".join(RAW[index::4] for index in range(3))
    payload = struct.pack("<4I", 10, 10, 10, len(frame)) + streams + frame
    assert_object_error(streams_object(payload, len(RAW)), RAW)
