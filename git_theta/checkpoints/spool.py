"""Zip-based formats need random access: copy the incoming stream to a temporary file first."""

from __future__ import annotations

import shutil
import tempfile
from typing import BinaryIO

COPY_BUFFER = 1 << 20


def spool(stream: BinaryIO) -> tempfile._TemporaryFileWrapper:
    """Copy ``stream`` into an anonymous temporary file, rewound, that is deleted when closed."""
    spooled = tempfile.NamedTemporaryFile(prefix="git-theta-", suffix=".spool")
    shutil.copyfileobj(stream, spooled, COPY_BUFFER)
    spooled.flush()
    spooled.seek(0)
    return spooled


def scratch_file() -> BinaryIO:
    """A temporary file to build an archive in before it is streamed out; deleted when closed."""
    return tempfile.TemporaryFile(prefix="git-theta-")


def copy_out(source: BinaryIO, out: BinaryIO) -> None:
    """Copy a finished temporary file to ``out``."""
    source.seek(0)
    shutil.copyfileobj(source, out, COPY_BUFFER)


def is_zip(head: bytes) -> bool:
    """Tell whether ``head`` starts a zip archive."""
    return head[:4] == b"PK\x03\x04"


def first_zip_member(head: bytes) -> str:
    """Return the name of the first member of a zip archive, read from its local header."""
    if not is_zip(head) or len(head) < 30:
        return ""
    length = int.from_bytes(head[26:28], "little")
    return head[30 : 30 + length].decode("utf-8", errors="replace")
