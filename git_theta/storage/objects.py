"""Content-addressed object stores: Git LFS's local layout on disk, and an in-memory one for tests.

An object's id (its *oid*) is the SHA-256 of its stored bytes, exactly as Git LFS defines it, so git-lfs can push,
fetch and verify our objects like any other. Objects live at ``<lfs storage>/objects/aa/bb/<oid>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, Protocol

from git_theta.storage.errors import ObjectError

if TYPE_CHECKING:
    from pathlib import Path  # paths are strings here: pathlib costs the filter milliseconds to import

#: How the names of our temporary files in ``<lfs storage>/tmp`` start (git-lfs's own there are not ours).
TEMPORARY_PREFIX = "theta-"


class ObjectWriter(Protocol):
    """Receives one object's bytes; ``commit`` stores it and returns ``(oid, size)``."""

    def write(self, data: bytes | memoryview) -> object: ...

    def reset(self) -> None: ...

    def commit(self) -> tuple[str, int]: ...

    def abort(self) -> None: ...


class ObjectStore(Protocol):
    """Where objects are kept."""

    def has(self, oid: str) -> bool: ...

    def open(self, oid: str) -> BinaryIO: ...

    def writer(self) -> ObjectWriter: ...

    def put(self, data: bytes) -> tuple[str, int]: ...


class LfsObjectStore:
    """Objects in Git LFS's local storage (``.git/lfs`` or ``lfs.storage``), written atomically."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self._objects = os.path.join(self.root, "objects")
        self._temporary = os.path.join(self.root, "tmp")
        self._made: set[str] = set()

    def path(self, oid: str) -> str:
        """Return where the object ``oid`` lives."""
        return os.path.join(self._objects, oid[0:2], oid[2:4], oid)

    def has(self, oid: str) -> bool:
        """Tell whether the object is present locally."""
        return os.path.isfile(self.path(oid))

    def open(self, oid: str) -> BinaryIO:
        """Open the object for reading, or say it is missing and what to do."""
        try:
            return open(self.path(oid), "rb", buffering=1 << 16)
        except FileNotFoundError:
            raise ObjectError(
                f"object {oid[:12]} is missing from {self._objects}; "
                "fetch it from the remote (git lfs fetch) or check the repository with git theta fsck"
            ) from None

    def writer(self) -> _LfsObjectWriter:
        """Start writing a new object."""
        return _LfsObjectWriter(self)

    def stored(self) -> Iterator[tuple[str, Path]]:
        """Yield ``(oid, path)`` of every object stored, git-theta's and plain Git LFS ones alike."""
        from pathlib import Path

        for path in Path(self._objects).glob("??/??/*"):
            oid = path.name
            where = (path.parent.parent.name, path.parent.name)  # not a string compare: Windows mixes separators
            if len(oid) == 64 and where == (oid[0:2], oid[2:4]) and all(c in "0123456789abcdef" for c in oid):
                yield oid, path

    def temporaries(self) -> Iterator[Path]:
        """Yield the temporary files our writers have in ``<lfs storage>/tmp`` (finished, failed or in progress)."""
        from pathlib import Path

        yield from Path(self._temporary).glob(f"{TEMPORARY_PREFIX}*")

    def remove(self, oid: str) -> int:
        """Delete object ``oid`` (one atomic unlink); return the bytes freed, 0 if it was not there."""
        path = self.path(oid)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return size

    def put(self, data: bytes) -> tuple[str, int]:
        """Store a small object given whole; return ``(oid, size)``."""
        oid = hashlib.sha256(data).hexdigest()
        if not self.has(oid):
            fd, name = self.temporary_file()
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                self.install(name, oid)
            except BaseException:
                _remove(name)  # a full disk must not leave half-written files behind
                raise
        return oid, len(data)

    def temporary_file(self) -> tuple[int, str]:
        """Create a new temporary file in ``<lfs storage>/tmp``, readable by us alone; return its descriptor and path.

        Like ``tempfile.mkstemp`` (a random name, created exclusively), without that module's import cost."""
        directory = self.directory(self._temporary)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        while True:
            name = os.path.join(directory, f"{TEMPORARY_PREFIX}{os.urandom(8).hex()}")
            try:
                return os.open(name, flags, 0o600), name
            except FileExistsError:  # pragma: no cover - a 64-bit random name taken
                continue

    def directory(self, path: str) -> str:
        """Return ``path``, created if needed (remembered, so each directory costs one mkdir)."""
        if path not in self._made:
            os.makedirs(path, exist_ok=True)
            self._made.add(path)
        return path

    def install(self, temporary: str, oid: str) -> None:
        """Move a finished temporary file into place as object ``oid`` (atomic; a duplicate is dropped)."""
        dest = self.path(oid)
        if os.path.isfile(dest):
            os.unlink(temporary)
            return
        self.directory(os.path.dirname(dest))
        os.chmod(temporary, 0o644)
        os.replace(temporary, dest)


#: Pieces of an object smaller than this are gathered into one write; larger ones are written as they come.
GATHER_BELOW = 64 << 10


class _LfsObjectWriter:
    """Writes to a temporary file while hashing, then renames into place (never a half-written object).

    Large pieces (a block's frame, about 1 MiB) go to the file as they are, without a copy through a buffer; small
    ones (a header, a frame table) are gathered until a large one comes, or the end.
    """

    def __init__(self, store: LfsObjectStore) -> None:
        self._store = store
        self._fd, self._path = store.temporary_file()
        self._hash = hashlib.sha256()
        self._size = 0
        self._small: list[bytes] = []
        self._small_size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        self._size += len(data)
        if len(data) >= GATHER_BELOW:
            self._write_out(data)
            return
        self._small.append(bytes(data))  # the caller may reuse its buffer
        self._small_size += len(data)
        if self._small_size >= GATHER_BELOW:
            self._write_out(b"")

    def _write_out(self, data: bytes | memoryview) -> None:
        """Write the gathered small pieces, then ``data``."""
        gathered, self._small, self._small_size = b"".join(self._small), [], 0
        for part in (gathered, data):
            view = memoryview(part).cast("B")
            while view:  # a write to a file is cut short only by a signal, or raises (a full disk)
                view = view[os.write(self._fd, view) :]

    def reset(self) -> None:
        self._small, self._small_size = [], 0
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._hash = hashlib.sha256()
        self._size = 0

    def commit(self) -> tuple[str, int]:
        try:
            self._write_out(b"")
        finally:
            self._close()
        oid = self._hash.hexdigest()
        self._store.install(self._path, oid)
        return oid, self._size

    def abort(self) -> None:
        with contextlib.suppress(OSError):  # the first error (a full disk) is the one to tell
            self._close()
        _remove(self._path)

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:  # closed once only: the number may be another file's by now
            os.close(fd)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class MemoryObjectStore:
    """An object store in a dict, for unit tests of the codecs and drivers."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def has(self, oid: str) -> bool:
        return oid in self.objects

    def open(self, oid: str) -> BinaryIO:
        if oid not in self.objects:
            raise ObjectError(f"object {oid[:12]} is missing")
        return io.BytesIO(self.objects[oid])

    def writer(self) -> _MemoryObjectWriter:
        return _MemoryObjectWriter(self)

    def put(self, data: bytes) -> tuple[str, int]:
        oid = hashlib.sha256(data).hexdigest()
        self.objects.setdefault(oid, data)
        return oid, len(data)


class _MemoryObjectWriter:
    def __init__(self, store: MemoryObjectStore) -> None:
        self._store = store
        self._buffer = io.BytesIO()

    def write(self, data: bytes | memoryview) -> None:
        self._buffer.write(data)

    def reset(self) -> None:
        self._buffer = io.BytesIO()

    def commit(self) -> tuple[str, int]:
        return self._store.put(self._buffer.getvalue())

    def abort(self) -> None:
        self._buffer = io.BytesIO()
