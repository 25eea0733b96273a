"""Reading sizes that a file declares without trusting them: memory grows only as the bytes actually arrive."""

from __future__ import annotations

from typing import BinaryIO

from git_theta.checkpoints.base import CheckpointError, read_exact

#: Sizes up to this are allocated at once; larger ones are read in pieces of this size, so that a truncated or
#: hostile file that claims terabytes fails at its end instead of allocating them first.
CHUNK = 16 << 20


class Truncated(CheckpointError):
    """The file ended before a size it declared."""


def read_bounded(stream: BinaryIO, size: int, label: str, what: str) -> bytearray:
    """Read exactly ``size`` bytes, allocating no more than has arrived (plus one chunk)."""
    if size <= CHUNK:
        try:
            return read_exact(stream, size, label, what)
        except CheckpointError as exc:
            raise Truncated(str(exc)) from None
    buffer = bytearray()
    while len(buffer) < size:
        piece = stream.read(min(CHUNK, size - len(buffer)))
        if not piece:
            raise Truncated(
                f"{label}: the file is truncated (ended inside {what}, {len(buffer)} of {size} bytes); "
                "restore a complete copy before adding it"
            )
        buffer += piece
    return buffer
