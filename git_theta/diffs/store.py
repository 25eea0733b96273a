"""Reading tensors back from their objects for a comparison, downloading the few that are not stored locally."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from git_theta.errors import GitThetaError
from git_theta.metadata import TensorEntry
from git_theta.storage.codec import decode
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import LfsObjectStore, ObjectStore

Fetch = Callable[[dict[str, int]], None]


class ObjectReader:
    """Decodes tensors from an object store; missing objects are downloaded through git-lfs when possible."""

    def __init__(self, store: ObjectStore, fetch: Fetch | None = None) -> None:
        self.store = store
        self._fetch = fetch
        self._lock = threading.Lock()  # tensors are decoded on several threads; one download at a time

    @classmethod
    def for_repository(cls, download: bool = True) -> ObjectReader:
        """The reader of the current repository's Git LFS storage (downloading through git-lfs if ``download``)."""
        from git_theta.git.repo import lfs_storage
        from git_theta.storage.lfs_transfer import fetch_objects

        return cls(LfsObjectStore(lfs_storage()), fetch_objects if download else None)

    def load(self, path: str, name: str, entry: TensorEntry) -> memoryview:
        """Return the exact bytes of one tensor, checked against its metadata entry."""
        if not self.store.has(entry.oid):
            self.require([entry])
        with self.store.open(entry.oid) as stream:
            label = f"{entry.oid[:12]} (tensor {name!r} of {path})"
            return decode(stream, entry.hash, entry.nbytes, entry.stored, label)

    def require(self, entries: Iterable[TensorEntry]) -> None:
        """Download, in one batch, the objects of ``entries`` that are not stored locally."""
        with self._lock:
            self._require(entries)

    def _require(self, entries: Iterable[TensorEntry]) -> None:
        missing = {entry.oid: entry.stored for entry in entries if not self.store.has(entry.oid)}
        if not missing:
            return
        reason = "no way to download them here"
        if self._fetch is not None:
            try:
                self._fetch(missing)
                return
            except GitThetaError as exc:
                reason = str(exc)
        raise ObjectError(
            f"{len(missing)} tensor object(s) needed for the comparison are not stored locally and could not be "
            f"downloaded (first: {sorted(missing)[0][:12]}; {reason}); fetch them with git lfs fetch, then retry"
        )
