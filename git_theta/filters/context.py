"""What the filters need from the repository, set up once per git command."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from functools import partial

from git_theta.git.attributes import CHECKPOINT_ATTRIBUTE, check_attr, tracked_by_theta
from git_theta.git.catfile import BlobReader
from git_theta.git.invocation import only_displaying
from git_theta.git.repo import DEFAULT_DEPTH, filter_settings
from git_theta.git.runner import GitError
from git_theta.git.trees import index_blobs, tree_blobs
from git_theta.metadata import CheckpointMetadata, MetadataError, TensorEntry, is_metadata
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
        max_delta_depth: int = DEFAULT_DEPTH,
    ) -> None:
        self.store = store
        self.level = level
        #: Updates that may stack on a tensor before it is stored whole again (``theta.maxDeltaDepth``).
        self.max_delta_depth = max_delta_depth
        #: Downloads missing objects (oid -> size); raises TransferError naming those it could not get.
        self.fetch = fetch
        #: ``GIT_LFS_SKIP_SMUDGE=1`` (as for git-lfs) or ``theta.lazy``: check out metadata only, without weights.
        self.skip_smudge = os.environ.get("GIT_LFS_SKIP_SMUDGE", "") not in ("", "0")
        #: git diff, log or show: smudged files only feed our diff driver and textconv.
        self.display_only = False
        self.executor = ThreadPoolExecutor(workers())
        self.window = workers() + 1
        #: Tensor hash -> how a tensor with exactly those bytes is already stored; filled as we go.
        self.known: dict[str, TensorEntry] = {}
        #: Tensor name -> its previous value in the file being cleaned, for storing a changed tensor as an update.
        self.previous: dict[str, TensorEntry] = {}
        #: Tensor name -> a same-named tensor of another checkpoint in the directory: a base for a new tensor.
        self.related: dict[str, TensorEntry] = {}
        #: The repository's blobs, through one ``git cat-file`` (None outside a repository, as in unit tests).
        self.blobs = blobs
        self._directories: dict[str, dict[str, CheckpointMetadata]] = {}

    @classmethod
    def for_repository(cls) -> FilterContext:
        """The context of the repository git runs us in."""
        settings = filter_settings()
        store = LfsObjectStore(settings.storage)
        context = cls(
            store, BlobReader(), partial(fetch_objects, store=store), max_delta_depth=settings.max_delta_depth
        )
        context.display_only = only_displaying()
        context.skip_smudge = context.skip_smudge or settings.lazy
        return context

    def previous_blob(self, path: str) -> bytes | None:
        """Return what git stores for ``path`` in the index, or else in HEAD (None if neither has it)."""
        if self.blobs is None:
            return None
        for name in (f":{path}", f"HEAD:{path}"):
            data = self.blobs.read(name)
            if data is not None:
                return data
        return None

    def previous_metadata(self, path: str) -> CheckpointMetadata | None:
        """Return the metadata of ``path`` in the index, or else in HEAD, if it is ours."""
        return _parsed(self.previous_blob(path))

    def committed_metadata(self, path: str) -> CheckpointMetadata | None:
        """Return the metadata of ``path`` in HEAD, if it is ours."""
        return _parsed(self.blobs.read(f"HEAD:{path}")) if self.blobs is not None else None

    def start_file(self) -> None:
        """Forget the previous values of the last file cleaned (one filter process cleans many)."""
        self.previous, self.related = {}, {}

    def remember(self, metadata: CheckpointMetadata, own: bool = True) -> None:
        """Record the tensors of ``metadata``: unchanged ones are not stored again, changed ones may be updates.

        ``own``: an earlier version of the file being cleaned (its tensors are their previous values), else another
        file's (its tensors may serve as bases of same-named tensors that have no previous value).
        """
        for name, entry in metadata.tensors.items():
            self.known.setdefault(entry.hash, entry)
            (self.previous if own else self.related).setdefault(name, entry)
            while entry.base:  # the values under an update are stored too: a return to one stores nothing
                entry = entry.base_entry()
                self.known.setdefault(entry.hash, entry)

    def remember_neighbours(self, path: str) -> None:
        """Remember the checkpoints tracked beside ``path`` (in the index and HEAD).

        A tensor that moved to another file of the directory, as when a sharded checkpoint is re-sharded, is then
        recognised and not stored again; a new file's tensors may be stored as updates of same-named ones.
        """
        for neighbour, metadata in self._neighbours(posixpath.dirname(path)).items():
            if neighbour != path:
                self.remember(metadata, own=False)

    def _neighbours(self, directory: str) -> dict[str, CheckpointMetadata]:
        """The metadata of the checkpoints tracked in ``directory``, read once per directory."""
        if self.blobs is None:
            return {}
        if directory not in self._directories:
            pattern = [f":(top,glob){directory}/*" if directory else ":(top,glob)*"]
            blobs = index_blobs(pattern, ".")
            with suppress(GitError):  # no HEAD yet
                blobs = {**tree_blobs("HEAD", pattern, "."), **blobs}
            found = {}
            for neighbour in tracked_by_theta(sorted(blobs)):
                metadata = _parsed(self.blobs.read(blobs[neighbour]))
                if metadata is not None:
                    found[neighbour] = metadata
            self._directories[directory] = found
        return self._directories[directory]

    def explicit_checkpoint_type(self, path: str) -> str | None:
        """Return the format named by the environment or the ``theta-checkpoint`` attribute, if any."""
        if os.environ.get(CHECKPOINT_TYPE_ENV):
            return os.environ[CHECKPOINT_TYPE_ENV]
        if self.blobs is None:
            return None
        value = check_attr(CHECKPOINT_ATTRIBUTE, [path]).get(path, "unspecified")
        return None if value in ("unspecified", "unset", "set") else value

    def close(self) -> None:
        """Release the thread pool and git processes."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self.blobs is not None:
            self.blobs.close()


def _parsed(data: bytes | None) -> CheckpointMetadata | None:
    if data is None or not is_metadata(data):
        return None
    try:
        return CheckpointMetadata.loads(data)
    except MetadataError:
        return None
