"""Checking a stored object completely: its SHA-256 is its id, and it decodes to the exact tensor it should hold."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, BinaryIO, cast

from git_theta.metadata import TensorEntry
from git_theta.storage.codec import decode
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import ObjectStore
from git_theta.storage.packs import open_stored

if TYPE_CHECKING:
    import io

READ_SIZE = 1 << 20


def object_problem(path: str, oid: str, entry: TensorEntry) -> str | None:
    """Return what is wrong with the object at ``path`` (one phrase after its id), or None when it is intact."""
    try:
        digest = _sha256(path)
    except FileNotFoundError:
        return "is missing locally"
    if digest != oid:
        return f"is corrupt: its SHA-256 is {digest[:12]}…, not its id"
    try:
        with open(path, "rb", buffering=READ_SIZE) as stream:
            decode(stream, entry.hash, entry.nbytes, entry.stored, oid)
    except ObjectError as exc:
        return str(exc).removeprefix(f"object {oid} ")
    except FileNotFoundError:
        return "is missing locally"
    return None


def piece_problem(store: ObjectStore, oid: str, entry: TensorEntry) -> str | None:
    """Return what is wrong with the pack ``oid`` or with ``entry``'s piece of it, or None when both are intact."""
    if not store.has(oid):
        return "is missing locally"
    try:
        stream, size = open_stored(store, entry, oid)
        with stream:
            decode(stream, entry.hash, entry.nbytes, size, oid)
    except ObjectError as exc:
        return str(exc).removeprefix(f"object {oid} ")
    return None


def _sha256(path: str) -> str:
    with open(path, "rb", buffering=0) as stream:
        return stream_sha256(stream)


def stream_sha256(stream: BinaryIO) -> str:
    """The SHA-256 (hex) of everything ``stream`` holds from where it is: an object's id when read whole."""
    digest = hashlib.sha256()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    while count := cast("io.BufferedIOBase", stream).readinto(buffer):  # every binary stream has it; IO omits it
        digest.update(view[:count])
    return digest.hexdigest()


def check_object_id(store: ObjectStore, oid: str, label: str) -> None:
    """Read the object ``oid`` whole and check that its bytes are the ones its id names."""
    with store.open(oid) as stream:
        if stream_sha256(stream) != oid:
            raise ObjectError(f"object {label} is corrupt: its content does not match its id")
