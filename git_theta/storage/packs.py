"""Packs: the objects of many small tensors in one stored object, so that a checkpoint of thousands of tiny tensors
costs one file to write and one to read instead of thousands.

A pack is an ordinary content-addressed object (its oid is the SHA-256 of its bytes), so Git LFS pushes, fetches and
verifies it like any other. Layout (docs/metadata-format.md):

    offset 0       8 bytes      magic ``GTPACK\\x00\\x01`` (``\\x01``: the pack format version)
    offset 8       4 bytes      N, the number of pieces, little-endian
    offset 12      4N bytes     each piece's length, little-endian u32, in order
    offset 12+4N   the rest     the pieces one after the other: each a complete tensor object (codec.py)

A tensor entry names the pack (``oid``, ``stored``) and its piece (``packed``: offset and length). A read loads the
pack once (a small cache, keyed by oid), checks it against its oid and its table, and decodes the piece like any
object, checked against the tensor's hash.
"""

from __future__ import annotations

import hashlib
import io
import struct
import threading
from collections import OrderedDict
from typing import BinaryIO

from git_theta.metadata import Piece, TensorEntry
from git_theta.storage.codec import ObjectReader
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import ObjectStore

MAGIC = b"GTPACK\x00\x01"
#: Bytes before the table of lengths.
PREFIX = len(MAGIC) + 4
#: A writer starts a new pack past this size; a reader refuses larger ones before reading them.
MAX_PACK = 32 << 20
#: Packs kept decoded in memory, by total size.
CACHE_BYTES = 64 << 20


def build_pack(pieces: list[bytes]) -> tuple[bytes, list[Piece]]:
    """The pack holding ``pieces`` in order, and where each lies in it."""
    table = struct.pack(f"<I{len(pieces)}I", len(pieces), *(len(piece) for piece in pieces))
    at, located = len(MAGIC) + len(table), []
    for piece in pieces:
        located.append((at, len(piece)))
        at += len(piece)
    return b"".join([MAGIC, table, *pieces]), located


def parse_pack(data: bytes | memoryview, label: str) -> set[Piece]:
    """Where the pieces of the pack ``data`` lie; ObjectError unless its layout accounts for every byte exactly."""
    if len(data) < PREFIX or bytes(data[: len(MAGIC)]) != MAGIC:
        raise ObjectError(f"object {label} is not a git-theta pack (bad magic)")
    (count,) = struct.unpack_from("<I", data, len(MAGIC))
    if count > (len(data) - PREFIX) // 4:  # checked before the table is read
        raise ObjectError(f"object {label} is corrupt: its table of {count} pieces runs past its end")
    lengths = struct.unpack_from(f"<{count}I", data, PREFIX)
    at = PREFIX + 4 * count
    if at + sum(lengths) != len(data):
        raise ObjectError(f"object {label} is corrupt: its pieces do not fill it exactly")
    pieces = set()
    for length in lengths:
        pieces.add((at, length))
        at += length
    return pieces


class _Pack:
    """A pack read whole and checked: its bytes and where its pieces lie."""

    def __init__(self, data: bytes, pieces: set[Piece]) -> None:
        self.data, self.pieces = data, pieces


#: Checked packs by (store, oid): a store that lacks a pack must say so, even when another store had it.
_cache: OrderedDict[tuple[int, str], _Pack] = OrderedDict()
_cache_lock = threading.Lock()


def read_piece(store: ObjectStore, oid: str, stored: int, piece: Piece, label: str) -> memoryview:
    """The bytes of one piece of the pack ``oid`` (of ``stored`` bytes), the pack checked against its id."""
    pack = _load(store, oid, stored, label)
    if piece not in pack.pieces:
        raise ObjectError(f"object {label} has no piece at offset {piece[0]} of {piece[1]} bytes")
    offset, length = piece
    return memoryview(pack.data)[offset : offset + length]


def _load(store: ObjectStore, oid: str, stored: int, label: str) -> _Pack:
    key = (id(store), oid)  # an id reused by a later store is harmless: the bytes are the ones ``oid`` names
    with _cache_lock:  # packs are small: one reader at a time costs little, and each is read once
        pack = _cache.get(key)
        if pack is not None:
            _cache.move_to_end(key)
            return pack
        pack = _read(store, oid, stored, label)
        _cache[key] = pack
        while sum(len(kept.data) for kept in _cache.values()) > CACHE_BYTES and len(_cache) > 1:
            _cache.popitem(last=False)
        return pack


def _read(store: ObjectStore, oid: str, stored: int, label: str) -> _Pack:
    if stored > MAX_PACK:
        raise ObjectError(f"object {label} is recorded as a pack of {stored} bytes, larger than any git-theta writes")
    with store.open(oid) as stream:
        data = stream.read(stored + 1)
    if len(data) != stored:
        state = "truncated" if len(data) < stored else "corrupt (longer than recorded)"
        raise ObjectError(f"object {label} is {state}: expected {stored} bytes")
    if hashlib.sha256(data).hexdigest() != oid:
        raise ObjectError(f"object {label} is corrupt: its content does not match its id")
    return _Pack(data, parse_pack(data, label))


def forget_packs() -> None:
    """Drop every cached pack (tests that damage a pack in place, in the same process)."""
    with _cache_lock:
        _cache.clear()


def open_stored(store: ObjectStore, entry: TensorEntry, label: str) -> tuple[BinaryIO, int]:
    """A stream over the object that holds ``entry``'s own bytes, and that object's expected size: the object
    ``oid`` itself, or the entry's piece of that pack."""
    if entry.packed is None:
        return store.open(entry.oid), entry.stored
    piece = read_piece(store, entry.oid, entry.stored, entry.packed, label)
    return io.BytesIO(piece), len(piece)


def open_reader(store: ObjectStore, entry: TensorEntry, label: str) -> ObjectReader:
    """The object holding ``entry``'s own bytes, opened and its header checked (see ``codec.ObjectReader``)."""
    stream, size = open_stored(store, entry, label)
    try:
        return ObjectReader(stream, entry.hash, entry.nbytes, size, label)
    except BaseException:
        stream.close()
        raise
