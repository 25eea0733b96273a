"""What the filters need from the repository, set up once per git command."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from git_theta.git.attributes import CHECKPOINT_ATTRIBUTE, check_attr
from git_theta.git.catfile import BlobReader
from git_theta.git.invocation import only_displaying
from git_theta.git.repo import filter_settings
from git_theta.metadata import CheckpointMetadata, MetadataError, is_metadata
from git_theta.pipeline import workers
from git_theta.storage.codec import DEFAULT_LEVEL
from git_theta.storage.lfs_transfer import fetch_objects
from git_theta.storage.objects import LfsObjectStore, ObjectStore

#: Set by ``git theta add --checkpoint-type``; inherited by the filter that ``git add`` starts.
CHECKPOINT_TYPE_ENV = "GIT_THETA_CHECKPOINT_TYPE"


class FilterContext:
    """The object store, a thread pool, and lookups of what the repository already holds."""

    def __init__(
        self,
        store: ObjectStore,
        blobs: BlobReader | None = None,
        fetch: Callable[[dict[str, int]], None] | None = None,
        level: int = DEFAULT_LEVEL,
    ) -> None:
        self.store = store
        self.level = level
        #: Downloads missing objects (oid -> size); raises TransferError naming those it could not get.
        self.fetch = fetch
        #: ``GIT_LFS_SKIP_SMUDGE=1`` (as for git-lfs) or ``theta.lazy``: check out metadata only, without weights.
        self.skip_smudge = os.environ.get("GIT_LFS_SKIP_SMUDGE", "") not in ("", "0")
        #: git diff, log or show: smudged files only feed our diff driver and textconv.
        self.display_only = False
        self.executor = ThreadPoolExecutor(workers())
        self.window = workers() + 1
        #: Tensor hash -> (oid, stored size) of tensors already stored; filled as we go.
        self.known: dict[str, tuple[str, int]] = {}
        self._blobs = blobs

    @classmethod
    def for_repository(cls) -> FilterContext:
        """The context of the repository git runs us in."""
        root, lazy = filter_settings()
        store = LfsObjectStore(root)
        context = cls(store, BlobReader(), partial(fetch_objects, store=store))
        context.display_only = only_displaying()
        context.skip_smudge = context.skip_smudge or lazy
        return context

    def previous_metadata(self, path: str) -> CheckpointMetadata | None:
        """Return the metadata of ``path`` in the index, or else in HEAD, if it is ours."""
        if self._blobs is None:
            return None
        for name in (f":{path}", f"HEAD:{path}"):
            data = self._blobs.read(name)
            if data is not None and is_metadata(data):
                try:
                    return CheckpointMetadata.loads(data)
                except MetadataError:
                    return None
        return None

    def remember(self, metadata: CheckpointMetadata) -> None:
        """Record the objects of ``metadata`` so that unchanged tensors are not encoded again."""
        for entry in metadata.tensors.values():
            self.known.setdefault(entry.hash, (entry.oid, entry.stored))

    def explicit_checkpoint_type(self, path: str) -> str | None:
        """Return the format named by the environment or the ``theta-checkpoint`` attribute, if any."""
        if os.environ.get(CHECKPOINT_TYPE_ENV):
            return os.environ[CHECKPOINT_TYPE_ENV]
        if self._blobs is None:
            return None
        value = check_attr(CHECKPOINT_ATTRIBUTE, [path]).get(path, "unspecified")
        return None if value in ("unspecified", "unset", "set") else value

    def close(self) -> None:
        """Release the thread pool and git processes."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self._blobs is not None:
            self._blobs.close()
