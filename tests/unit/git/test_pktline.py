"""pkt-line framing (gitprotocol-common(5)): exact bytes on the wire, content streams, and malformed input."""

from __future__ import annotations

import io
import os
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from git_theta.git.pktline import (
    FLUSH,
    MAX_DATA,
    PACKETS_PER_WRITE,
    PacketReader,
    PacketWriter,
    ProtocolError,
    read_packet,
    read_text_list,
    write_text_list,
)
from tests.unit.support import PROPERTY

#: Git's LARGE_PACKET_MAX: no packet, length prefix included, may be longer.
LARGE_PACKET_MAX = 65520


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def split_packets(wire: bytes) -> list[bytes | None]:
    """Parse a whole pkt-line stream; None stands for a flush packet."""
    stream, result = io.BytesIO(wire), []
    while stream.tell() < len(wire):
        result.append(read_packet(stream))
    return result


def test_read_packet() -> None:
    stream = io.BytesIO(pkt(b"hello\n") + FLUSH + pkt(b""))
    assert read_packet(stream) == b"hello\n"
    assert read_packet(stream) is None
    assert read_packet(stream) == b""
    with pytest.raises(EOFError):
        read_packet(stream)


@pytest.mark.parametrize(
    "wire",
    [b"00", b"zzzz", b"0001", b"0002", b"0003", b"000ahel", b"-001"],
    ids=["short header", "not hex", "delim", "response end", "length 3", "short body", "negative"],
)
def test_malformed_packets(wire: bytes) -> None:
    with pytest.raises(ProtocolError) as excinfo:
        read_packet(io.BytesIO(wire))
    assert "\n" not in str(excinfo.value)


def test_text_lists() -> None:
    out = io.BytesIO()
    write_text_list(out, ["command=clean", "pathname=dir/a b.pt"])
    assert out.getvalue() == b"0012command=clean\n" + b"0018pathname=dir/a b.pt\n" + b"0000"
    assert read_text_list(io.BytesIO(out.getvalue())) == ["command=clean", "pathname=dir/a b.pt"]
    assert read_text_list(io.BytesIO(pkt(b"no-newline") + FLUSH)) == ["no-newline"]
    empty = io.BytesIO()
    write_text_list(empty, [])
    assert empty.getvalue() == FLUSH


def test_writer_splits_at_the_largest_packet() -> None:
    out = io.BytesIO()
    data = bytes(range(256)) * 600  # 153600 bytes: two full packets and a short one
    assert PacketWriter(out).write(data) == len(data)
    packets = split_packets(out.getvalue())
    assert [len(p) for p in packets] == [MAX_DATA, MAX_DATA, len(data) - 2 * MAX_DATA]
    assert MAX_DATA + 4 == LARGE_PACKET_MAX
    assert b"".join(packets) == data


def test_writer_sends_no_empty_packet() -> None:
    out = io.BytesIO()
    PacketWriter(out).write(b"")
    assert out.getvalue() == b""


@PROPERTY
@given(
    chunks=st.lists(st.binary(max_size=300), max_size=8),
    read_sizes=st.lists(st.integers(1, 500), min_size=1, max_size=5),
)
def test_reader_reassembles_content(chunks: list[bytes], read_sizes: list[int]) -> None:
    wire = b"".join(pkt(c) for c in chunks) + FLUSH + pkt(b"next request\n")
    stream = io.BytesIO(wire)
    reader = PacketReader(stream)
    received, turn = b"", 0
    while block := reader.read(read_sizes[turn % len(read_sizes)]):
        received += block
        turn += 1
    assert received == b"".join(chunks)
    assert reader.read(10) == b""  # stays at the end of this request
    assert read_packet(stream) == b"next request\n"  # and leaves the next one untouched


def test_reader_drain_skips_the_rest() -> None:
    stream = io.BytesIO(pkt(b"abc") + pkt(b"def") + FLUSH + pkt(b"after"))
    reader = PacketReader(stream)
    assert reader.read(2) == b"ab"
    reader.drain()
    assert reader.read(1) == b""
    assert read_packet(stream) == b"after"
    reader.drain()  # draining twice is harmless and reads nothing more
    with pytest.raises(EOFError):
        read_packet(stream)


def test_reader_reports_truncation() -> None:
    reader = PacketReader(io.BytesIO(pkt(b"abc") + b"00"))
    assert reader.read(3) == b"abc"
    with pytest.raises(ProtocolError):
        reader.read(1)


def test_writer_frames_large_content_through_a_pipe_in_order() -> None:
    # On a real pipe large content goes out with writev, PACKETS_PER_WRITE packets at a time, after whatever the
    # buffered stream still holds.
    read_end, write_end = os.pipe()
    data = os.urandom(MAX_DATA * PACKETS_PER_WRITE * 2 + 12345)  # two full system calls and a short one
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(_read_all(read_end)))
    reader.start()
    with open(write_end, "wb") as stream:
        stream.write(pkt(b"status=success\n"))  # still in the buffer when the large write starts
        PacketWriter(stream).write(b"tail?")  # small: through the buffer
        PacketWriter(stream).write(data)
    reader.join()
    packets = split_packets(bytes(received))
    assert packets[:2] == [b"status=success\n", b"tail?"]
    assert b"".join(packets[2:]) == data and max(len(packet or b"") for packet in packets) == MAX_DATA


def _read_all(fd: int) -> bytes:
    with open(fd, "rb") as stream:
        return stream.read()
