"""Git's pkt-line framing (gitprotocol-common(5)), as used by the long-running filter protocol."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, BinaryIO

from git_theta.errors import GitThetaError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

MAX_DATA = 65516
FLUSH = b"0000"
_HEX_DIGITS = b"0123456789abcdefABCDEF"
#: Packets handed to the kernel in one system call when large content is written (about 1 MiB).
PACKETS_PER_WRITE = 16
#: Linux's fcntl that sets a pipe's capacity (F_SETPIPE_SZ; not in Python's fcntl module before 3.10 on all builds).
_SETPIPE_SIZE = 1031
#: The pipe capacity asked for: 1 MiB (Linux's default limit for a user), instead of 64 KiB, so that git wakes up
#: once per megabyte of a checkout rather than once per packet.
PIPE_SIZE = 1 << 20


class ProtocolError(GitThetaError):
    """Git sent something the filter protocol does not allow."""


class TruncatedPacket(ProtocolError, EOFError):
    """Git's input ended inside a packet: git went away mid-request (an EOFError, as its clean end is)."""


def read_packet(stream: BinaryIO) -> bytes | None:
    """Read one packet; return None for a flush packet. Raise EOFError at a clean end of input."""
    length = _packet_length(stream)
    if length is None:
        return None
    data = stream.read(length)
    if len(data) != length:
        raise TruncatedPacket("truncated pkt-line from git")
    return data


def _packet_length(stream: BinaryIO) -> int | None:
    """Read a packet's header; return the length of its content, None for a flush packet. EOFError at a clean end."""
    head = stream.read(4)
    if not head:
        raise EOFError
    if len(head) != 4:
        raise TruncatedPacket("truncated pkt-line header from git")
    if head.strip(_HEX_DIGITS):  # int() alone would also take signs, spaces, underscores and "0x"
        raise ProtocolError(f"bad pkt-line header {head!r} from git")
    length = int(head, 16)
    if length == 0:
        return None
    if length < 4:
        raise ProtocolError(f"bad pkt-line length {length} from git")
    return length - 4


def read_text_list(stream: BinaryIO) -> list[str]:
    """Read text packets up to a flush packet."""
    items = []
    while (packet := read_packet(stream)) is not None:
        items.append(packet.decode("utf-8", errors="surrogateescape").rstrip("\n"))
    return items


def write_text_list(stream: BinaryIO, items: list[str]) -> None:
    """Write text packets followed by a flush packet."""
    for item in items:
        data = (item + "\n").encode("utf-8", errors="surrogateescape")
        stream.write(b"%04x" % (len(data) + 4) + data)
    stream.write(FLUSH)
    stream.flush()


class PacketReader(io.RawIOBase):
    """The content packets of one request as a readable stream, ending at the flush packet.

    Content is read straight from ``stream`` into the caller's buffer, across as many packets as fit: no packet is
    copied on its way (a 1 GiB checkpoint comes in about 16,000 packets).
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._left = 0  # bytes of the current packet not read yet
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io passes only these
        with memoryview(buffer) as view:
            filled = 0
            while filled < len(view) and self._next_packet():
                count = self._stream.readinto(view[filled : filled + min(self._left, len(view) - filled)])  # type: ignore[attr-defined]
                if not count:
                    raise TruncatedPacket("truncated pkt-line from git")
                self._left -= count
                filled += count
            return filled

    def _next_packet(self) -> bool:
        """Make sure the current packet has content left; False at the flush packet that ends the content."""
        while not self._left and not self._done:
            length = _packet_length(self._stream)
            if length is None:
                self._done = True
            else:
                self._left = length
        return not self._done

    def drain(self) -> None:
        """Skip the rest of the content (git expects us to read it all before answering)."""
        while self._next_packet():
            skipped = len(self._stream.read(self._left))
            if not skipped:
                raise TruncatedPacket("truncated pkt-line from git")
            self._left -= skipped


class PacketWriter(io.RawIOBase):
    """A writable stream that frames everything written to it as content packets."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._fd = None

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        if self._fd is not None and len(view) > MAX_DATA:
            self._stream.flush()  # keep order with what went through the buffered stream
            step = MAX_DATA * PACKETS_PER_WRITE
            for start in range(0, len(view), step):
                _writev_all(self._fd, _framed(view[start : start + step]))
            return len(view)
        for start in range(0, len(view), MAX_DATA):
            chunk = view[start : start + MAX_DATA]
            self._stream.write(b"%04x" % (len(chunk) + 4))
            self._stream.write(chunk)
        return len(view)


def _framed(view: memoryview) -> list[bytes | memoryview]:
    """The packets of ``view``, each header followed by its content (a slice of ``view``, not a copy)."""
    parts: list[bytes | memoryview] = []
    for start in range(0, len(view), MAX_DATA):
        chunk = view[start : start + MAX_DATA]
        parts += (b"%04x" % (len(chunk) + 4), chunk)
    return parts


def _writev_all(fd: int, parts: list[bytes | memoryview]) -> None:
    """Write ``parts`` in one system call (the data is not copied), finishing a write a signal cut short."""
    written = os.writev(fd, parts)
    total = sum(len(part) for part in parts)
    if written < total:
        rest = b"".join(parts)[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]


def widen_pipe(stream: BinaryIO) -> None:
    """Ask for a 1 MiB pipe between git and ``stream`` (Linux only; elsewhere, when ``stream`` is not a pipe, or
    when refused, it stays as it is)."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), _SETPIPE_SIZE, PIPE_SIZE)
    except (ImportError, OSError, AttributeError, ValueError, io.UnsupportedOperation):
        pass
