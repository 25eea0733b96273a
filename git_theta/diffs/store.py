"""Reading tensors back from their objects for a comparison, downloading the few that are not stored locally."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from functools import partial

from git_theta.metadata import TensorEntry
from git_theta.pipeline import frame_executor
from git_theta.representations.pairs import share_keyframe, stream_pair
from git_theta.representations.read import read_tensor, tensor_label
from git_theta.representations.stream import stream_tensors
from git_theta.storage.errors import ObjectError
from git_theta.storage.lfs_transfer import download_missing
from git_theta.storage.objects import LfsObjectStore, ObjectStore

Fetch = Callable[[dict[str, int]], None]


class ObjectReader:
    """Decodes tensors from an object store; missing objects are downloaded through git-lfs when possible."""

    def __init__(self, store: ObjectStore, fetch: Fetch | None = None) -> None:
        self.store = store
        self._fetch = fetch
        self._lock = threading.Lock()  # tensors are decoded on several threads; one download at a time

    @classmethod
    def for_repository(cls, download: bool = True, cwd: str | None = None) -> ObjectReader:
        """The reader of the Git LFS storage of the repository at ``cwd`` (downloading through git-lfs if
        ``download``)."""
        from git_theta.git.repo import lfs_storage
        from git_theta.storage.lfs_transfer import fetch_objects

        store = LfsObjectStore(lfs_storage(cwd))
        return cls(store, partial(fetch_objects, store=store, cwd=cwd) if download else None)

    @property
    def fetch(self) -> Fetch | None:
        """How missing objects are downloaded; None when they are not (textconv)."""
        return self._fetch

    def load(self, path: str, name: str, entry: TensorEntry) -> memoryview:
        """Return the exact bytes of one tensor, checked against its metadata entry."""
        if not all(self.store.has(oid) for oid in entry.objects()):
            self.require([entry])
        return read_tensor(self.store, entry, tensor_label(path, name, entry))

    def blocks(self, path: str, name: str, entry: TensorEntry) -> Iterator[memoryview]:
        """Yield the exact bytes of one tensor block by block, decoded ahead on every core; the hash is checked
        when the last block has been taken (a mismatch raises ObjectError then), so read it to the end."""
        if not all(self.store.has(oid) for oid in entry.objects()):
            self.require([entry])
        label = tensor_label(path, name, entry)
        yield from next(stream_tensors(self.store, [(label, entry)], frame_executor()))

    def pair_blocks(
        self, path: str, name: str, old: TensorEntry, new: TensorEntry
    ) -> Iterator[tuple[memoryview, memoryview]] | None:
        """Yield two versions of one tensor side by side, block by block, when they are stored against the same
        keyframe (which is then decoded once for both); None when they are not. Checked as ``blocks`` is."""
        if not share_keyframe(old, new):
            return None
        if not all(self.store.has(oid) for entry in (old, new) for oid in entry.objects()):
            self.require([old, new])
        labels = (tensor_label(path, name, old), tensor_label(path, name, new))
        return stream_pair(self.store, (labels[0], old), (labels[1], new), frame_executor())

    def require(self, entries: Iterable[TensorEntry]) -> None:
        """Download, in one batch, the objects of ``entries`` that are not stored locally."""
        with self._lock:
            self._require(entries)

    def _require(self, entries: Iterable[TensorEntry]) -> None:
        objects = {oid: size for entry in entries for oid, size in entry.objects().items()}
        missing, reason = download_missing(self.store, objects, self._fetch)
        if missing:
            raise ObjectError(
                f"{len(missing)} tensor object(s) needed for the comparison are not stored locally and could not "
                f"be downloaded (first: {sorted(missing)[0][:12]}; {reason}); fetch them with git lfs fetch, then retry"
            )
