"""The pack format: pieces in, pieces out; every byte accounted for; a damaged or mislabelled pack is refused."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from git_theta.metadata import TensorEntry
from git_theta.storage.codec import encode
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import MemoryObjectStore
from git_theta.storage.packs import MAGIC, build_pack, forget_packs, open_reader, parse_pack, read_piece
from tests.unit.support import PROPERTY


@PROPERTY
@given(pieces=st.lists(st.binary(min_size=1, max_size=64), max_size=20))
def test_a_pack_gives_back_its_pieces(pieces: list[bytes]) -> None:
    pack, located = build_pack(pieces)
    assert pack.startswith(MAGIC)
    assert parse_pack(pack, "p") == set(located)
    assert [pack[offset : offset + length] for offset, length in located] == pieces


def test_the_layout_is_magic_count_lengths_then_pieces() -> None:
    pack, located = build_pack([b"abc", b"de"])
    assert pack == b"GTPACK\x00\x01" + struct.pack("<3I", 2, 3, 2) + b"abcde"
    assert located == [(20, 3), (23, 2)]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "bad magic"),
        (b"GTOBJ\x00\x01\x00" + bytes(8), "bad magic"),
        (MAGIC + struct.pack("<I", 2**32 - 1), "runs past its end"),  # refused before the table is read
        (MAGIC + struct.pack("<II", 1, 5) + b"abcd", "do not fill it exactly"),
        (MAGIC + struct.pack("<II", 1, 3) + b"abcd", "do not fill it exactly"),
    ],
)
def test_a_malformed_pack_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(ObjectError, match=problem):
        parse_pack(data, "p")


def _packed_tensor(raw: bytes = b"\x01" * 40) -> tuple[MemoryObjectStore, TensorEntry]:
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    from git_theta.storage.codec import MemorySink

    sink = MemorySink()
    encode(memoryview(raw), digest, 4, sink, 1, None)
    pack, located = build_pack([b"another piece", sink.getvalue()])
    store = MemoryObjectStore()
    oid, stored = store.put(pack)
    return store, TensorEntry("F32", (10,), len(raw), digest, oid, stored, packed=located[1])


def test_a_packed_tensor_is_read_from_its_piece() -> None:
    store, entry = _packed_tensor()
    with open_reader(store, entry, "t") as reader:
        assert bytes(reader.read_block(reader.blocks[0])) == b"\x01" * 40


def test_a_piece_not_in_the_table_is_refused() -> None:
    store, entry = _packed_tensor()
    offset, length = entry.packed or (0, 0)
    with pytest.raises(ObjectError, match="has no piece at offset"):
        read_piece(store, entry.oid, entry.stored, (offset + 1, length - 1), "t")


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend", "missing"])
def test_a_damaged_pack_is_one_line_naming_it(damage: str) -> None:
    store, entry = _packed_tensor()
    data = store.objects[entry.oid]
    changed = {
        "flip": data[:-1] + bytes([data[-1] ^ 1]),
        "truncate": data[:-1],
        "extend": data + b"\x00",
    }
    if damage == "missing":
        del store.objects[entry.oid]
    else:
        store.objects[entry.oid] = changed[damage]
    forget_packs()
    with pytest.raises(ObjectError) as excinfo:
        open_reader(store, entry, f"{entry.oid[:12]} (tensor 'w' of m.safetensors)")
    message = str(excinfo.value)
    assert "\n" not in message and entry.oid[:12] in message


def test_a_pack_larger_than_any_written_is_refused_before_it_is_read() -> None:
    store, entry = _packed_tensor()
    with pytest.raises(ObjectError, match="larger than any"):
        read_piece(store, entry.oid, 1 << 40, entry.packed or (0, 0), "t")
