"""The container of a ``torch.save`` file, checked against the file before torch maps storages out of it.

With ``mmap=True`` torch takes each storage from the file at its record's offset, for as many bytes as the pickle
declares, and allocates records (its pickle first) at the sizes the zip directory declares; neither is compared with
the file. So every size is checked here first: each record within the file, and each storage exactly its record.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any

from git_theta.checkpoints.base import CheckpointError
from git_theta.checkpoints.pickle_scan import storages

#: The typed storage classes torch.save names (``torch FloatStorage``), by element size; storages of newer dtypes are
#: saved untyped (``torch.storage UntypedStorage``), counted in bytes.
LEGACY_STORAGES = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8, "IntStorage": 4,
    "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1, "ComplexDoubleStorage": 16,
    "ComplexFloatStorage": 8, "QUInt8Storage": 1, "QInt8Storage": 1, "QInt32Storage": 4, "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
}  # fmt: skip
#: Deflate expands its input at most about 1032 times.
DEFLATE_RATIO = 1032


def check_records(spooled: Any, label: str) -> None:
    """Refuse a zip whose records claim more than the file holds, or whose storages are not their records' size."""
    with zipfile.ZipFile(spooled) as archive:
        _check_record_sizes(archive, os.fstat(spooled.fileno()).st_size, label)
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(pickles) == 1:  # otherwise not a checkpoint torch loads: it says so itself
            _check_storages(archive, pickles[0], label)
    spooled.seek(0)


def _check_record_sizes(archive: zipfile.ZipFile, total: int, label: str) -> None:
    for info in archive.infolist():
        expands = 1 if info.compress_type == zipfile.ZIP_STORED else DEFLATE_RATIO
        if info.compress_size > total or info.file_size > expands * info.compress_size + 64:
            raise _invalid(label, f"record {info.filename[:60]!r} claims more bytes than the file holds")


def _check_storages(archive: zipfile.ZipFile, pickle_name: str, label: str) -> None:
    prefix = pickle_name[: -len("data.pkl")]
    for key, storage_type, numel in storages(archive.read(pickle_name), label):
        size = numel * _element_size(storage_type)
        held = _record_size(archive, f"{prefix}data/{key}")
        if held != size:
            raise _invalid(label, f"storage {key[:40]!r} declares {size} bytes, its record holds {held}")


def _record_size(archive: zipfile.ZipFile, name: str) -> int | None:
    """The size of a record whose local header is sound (torch's mapping reads it unchecked), or None."""
    try:
        with archive.open(name):
            return archive.getinfo(name).file_size
    except KeyError:
        return None


def _element_size(storage_type: str) -> int:
    """The element size of a storage type named as the pickle names it (``torch FloatStorage``)."""
    module, _, name = storage_type.partition(" ")
    return LEGACY_STORAGES.get(name, 1) if module == "torch" else 1


def _invalid(label: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"{label}: not a PyTorch checkpoint git-theta can read ({what}); check the file or re-save it with torch.save"
    )


class Clamped(io.RawIOBase):
    """A file that never reads past its end, for torch's pre-zip format: its unpickler reads as many bytes as the
    pickle declares (``file.read(n)`` allocates ``n`` first), so a lying length costs at most what the file holds."""

    def __init__(self, file: Any) -> None:
        self.file, self.size = file, os.fstat(file.fileno()).st_size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def read(self, size: int | None = -1) -> bytes:
        left = max(0, self.size - self.file.tell())
        return self.file.read(left if size is None or size < 0 else min(size, left))

    def readinto(self, buffer: Any) -> int:
        return self.file.readinto(buffer)
