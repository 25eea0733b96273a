"""The local LFS store on disk: objects where git-lfs keeps them, written atomically, listed exactly."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from git_theta.storage.objects import GATHER_BELOW, TEMPORARY_PREFIX, LfsObjectStore


def test_put_stores_by_content_and_lists_only_objects_in_their_place(tmp_path: Path) -> None:
    store = LfsObjectStore(tmp_path / "lfs")
    oid, size = store.put(b"weights")
    assert (oid, size) == (hashlib.sha256(b"weights").hexdigest(), 7)
    assert store.has(oid) and Path(store.path(oid)).read_bytes() == b"weights"
    assert store.put(b"weights") == (oid, size)  # the same bytes again: the same object, nothing new
    misplaced = tmp_path / "lfs" / "objects" / "00" / "00" / oid  # a copy in the wrong folders is no object of ours
    misplaced.parent.mkdir(parents=True)
    misplaced.write_bytes(b"weights")
    (Path(store.path(oid)).parent / ("x" * 64)).write_bytes(b"")  # not a hex name
    assert [found for found, _ in store.stored()] == [oid]
    assert list(store.temporaries()) == []  # the temporary file was renamed into place


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = LfsObjectStore(str(tmp_path / "lfs"))  # a string root works as a Path does
    writer = store.writer()
    writer.write(b"partial")
    assert [path.name.startswith(TEMPORARY_PREFIX) for path in store.temporaries()] == [True]
    writer.abort()
    assert list(store.temporaries()) == [] and not any(os.scandir(tmp_path / "lfs" / "tmp"))
    fd, name = store.temporary_file()
    os.close(fd)
    assert Path(name).parent == tmp_path / "lfs" / "tmp" and oct(os.stat(name).st_mode & 0o777) == oct(0o600)


def test_the_writer_keeps_the_order_of_small_and_large_pieces_and_starts_over_on_reset(tmp_path: Path) -> None:
    store = LfsObjectStore(tmp_path / "lfs")
    large = os.urandom(GATHER_BELOW + 5)
    writer = store.writer()
    writer.write(b"discarded")
    writer.reset()
    pieces = [b"header", memoryview(large), b"a", b"b", bytearray(os.urandom(GATHER_BELOW)), b"table"]
    for piece in pieces:
        writer.write(piece)
    expected = b"".join(bytes(piece) for piece in pieces)
    oid, size = writer.commit()
    assert (oid, size) == (hashlib.sha256(expected).hexdigest(), len(expected))
    assert Path(store.path(oid)).read_bytes() == expected


def test_a_writer_whose_last_write_failed_closes_its_file_once(tmp_path: Path, monkeypatch) -> None:
    store = LfsObjectStore(tmp_path / "lfs")
    writer = store.writer()
    writer.write(b"gathered, written at the commit")

    def full_disk(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space"):
        writer.commit()
    monkeypatch.undo()
    other = os.open(tmp_path / "other", os.O_CREAT | os.O_WRONLY)  # may reuse the writer's descriptor number
    writer.abort()  # must not close ``other``
    os.write(other, b"still open")
    os.close(other)
    assert list(store.temporaries()) == []
