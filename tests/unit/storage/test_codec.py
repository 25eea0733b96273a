"""The tensor object codec: exact round trips, byte grouping, the raw fallback, and corruption always caught."""

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
from git_theta.storage.codec import BLOCK, MAGIC, MIN_COMPRESS
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import MemoryObjectStore
from tests.unit.support import PROPERTY

GROUPS = [1, 2, 4, 8, 16]
LABEL = "abc123 (tensor 'w' of m.safetensors)"
GOLDEN = Path(__file__).parents[2] / "golden"


def digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def encode(raw: bytes, group: int) -> tuple[bytes, str]:
    """Encode through a real store writer; return the object's bytes and the codec chosen."""
    store = MemoryObjectStore()
    writer = store.writer()
    used = codec.encode(memoryview(raw), digest(raw), group, writer)
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
@given(raw=st.binary(max_size=5000), group=st.sampled_from(GROUPS))
def test_round_trip_arbitrary_bytes(raw: bytes, group: int) -> None:
    obj, used = encode(raw, group)
    assert decode(obj, raw) == raw
    assert len(obj) <= len(encode_raw_only(raw))  # never worse than storing the bytes as they are
    if len(raw) < MIN_COMPRESS:
        assert used == "raw"


@PROPERTY
@given(size=st.integers(0, 20000), seed=st.integers(0, 2**32 - 1), group=st.sampled_from(GROUPS))
def test_round_trip_compressible(size: int, seed: int, group: int) -> None:
    raw = smooth(size, seed)
    obj, used = encode(raw, group)
    assert decode(obj, raw) == raw
    if size >= 4096:
        assert used == "zstd" and len(obj) < len(raw)


def encode_raw_only(raw: bytes) -> bytes:
    body = json.dumps({"codec": "raw", "hash": digest(raw), "size": len(raw)}, sort_keys=True, separators=(",", ":"))
    return MAGIC + struct.pack("<I", len(body)) + body.encode() + raw


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize(
    "size", [0, 1, MIN_COMPRESS - 1, MIN_COMPRESS, BLOCK - 1, BLOCK, BLOCK + 3, 2 * BLOCK + 5], ids=str
)
def test_block_boundaries(size: int, group: int) -> None:
    raw = smooth(size, seed=size)
    obj, used = encode(raw, group)
    assert decode(obj, raw) == raw
    if size < MIN_COMPRESS:
        assert used == "raw"
    elif size >= 4096:
        assert used == "zstd"
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
def test_payload_is_byte_grouped_per_block(group: int) -> None:
    raw = smooth(BLOCK + 4 * group + 3, seed=group)
    obj, used = encode(raw, group)
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


def test_encoding_is_deterministic() -> None:
    raw = smooth(300_000)
    assert encode(raw, 4) == encode(raw, 4)


def test_object_headers_golden() -> None:
    """Pins the object format (docs/metadata-format.md); regenerate with UPDATE_GOLDEN=1 if it changes on purpose."""
    from tests.unit.test_metadata import check_golden

    lines = []
    for name, raw, group in [("raw", bytes(range(40)), 4), ("zstd", bytes(4096), 2)]:
        obj, used = encode(raw, group)
        header, _ = header_of(obj)
        lines.append(f"{name}: {obj[:12].hex()} {json.dumps(header, sort_keys=True, separators=(',', ':'))}")
    check_golden("object_headers.txt", ("\n".join(lines) + "\n").encode())


# --- corruption ----------------------------------------------------------------------------------------------------

SAMPLES = {
    "raw": (np.random.default_rng(0).bytes(512), 1),
    "zstd": (smooth(3000, seed=1), 4),
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
    obj, used = encode(raw, group)
    assert used == kind
    for cut in range(len(obj)):
        assert_object_error(obj[:cut], raw, object_size=len(obj))


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_flipped_payload_byte(kind: str) -> None:
    raw, group = SAMPLES[kind]
    obj, _ = encode(raw, group)
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
    obj, _ = encode(raw, group)
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
    obj, _ = encode(raw, group)
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
    ],
)
def test_header_fields_are_validated(header: dict) -> None:
    assert_object_error(crafted(header, RAW), RAW)


def test_header_too_large() -> None:
    obj = MAGIC + struct.pack("<I", (1 << 16) + 1) + b"{" + b" " * (1 << 16)
    assert_object_error(obj, RAW)
