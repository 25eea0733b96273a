"""The state of one git command: the object store, threads, settings and lookups of what the repository holds.

Filters, merges, migration and diffs all work through one ``Session``, set up once per git command.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

from git_theta.git.attributes import CHECKPOINT_ATTRIBUTE, FILTER_ATTRIBUTE, AttributeReader, tracked_by_theta
from git_theta.git.catfile import BlobReader
from git_theta.git.invocation import only_displaying
from git_theta.git.repo import DEFAULT_DEPTH, SettingsQuery
from git_theta.git.trees import Listing
from git_theta.metadata import CheckpointMetadata, MetadataError, TensorEntry, is_metadata
from git_theta.pipeline import Pool, frame_executor, workers
from git_theta.session.known import Checkpoints, KnownTensors
from git_theta.storage.encoder import Encoder
from git_theta.storage.lfs_transfer import fetch_objects
from git_theta.storage.objects import LfsObjectStore, ObjectStore

#: Set by ``git theta add --checkpoint-type``; inherited by the filter that ``git add`` starts.
CHECKPOINT_TYPE_ENV = "GIT_THETA_CHECKPOINT_TYPE"
#: Set by ``git theta add --update-type`` for the filter that ``git add`` starts (representations/requested_update.py;
#: the updates themselves: updates/requests.py).
UPDATE_TYPE_ENV = "GIT_THETA_UPDATE_TYPE"
#: Up to this many paths are asked whether they are ours through the running ``git check-attr``; more through one
#: new ``git check-attr`` given them all (a process start costs what about this many questions do).
ASKED_ONE_BY_ONE = 16


class Session:
    """The object store, thread pools, encoding settings, and lookups of what the repository already holds."""

    def __init__(
        self,
        store: ObjectStore,
        blobs: BlobReader | None = None,
        fetch: Callable[[dict[str, int]], None] | None = None,
        encoder: Encoder | None = None,
        max_delta_depth: int = DEFAULT_DEPTH,
        index: str | None = None,
    ) -> None:
        self.store = store
        #: How new objects are encoded (compression level, threads for a large tensor's blocks).
        self.encoder = encoder if encoder is not None else Encoder(executor=frame_executor())
        #: Updates that may stack on a tensor before it is stored whole again (``theta.maxDeltaDepth``).
        self.max_delta_depth = max_delta_depth
        #: Downloads missing objects (oid -> size); raises TransferError naming those it could not get.
        self.fetch = fetch
        #: ``GIT_LFS_SKIP_SMUDGE=1`` (as for git-lfs) or ``theta.lazy``: check out metadata only, without weights.
        self.skip_smudge = os.environ.get("GIT_LFS_SKIP_SMUDGE", "") not in ("", "0")
        #: git diff, log or show: smudged files only feed our diff driver and textconv.
        self.display_only = False
        self.executor = Pool(workers(), "git-theta-tensors")
        self.window = workers() + 1
        #: The repository's blobs, through one ``git cat-file`` (None outside a repository, as in unit tests).
        self.blobs = blobs
        #: The ``theta-checkpoint`` and ``filter`` attributes of each path, through one ``git check-attr`` (None
        #: without ``blobs``).
        self.attributes = AttributeReader(CHECKPOINT_ATTRIBUTE, FILTER_ATTRIBUTE) if blobs is not None else None
        #: The index file, whose changes (another step of a rebase, say) make what we read of it stale.
        self.index = index
        #: What the file being cleaned (or merged) may reuse or build on; see session/known.py.
        self.file = KnownTensors("", ())
        #: The repository's hooks directory, read with the other settings (None outside a repository).
        self.hooks: str | None = None
        self._state: tuple | None = None
        self._checkpoints: Checkpoints | None = None
        self._listing: Listing | None = None

    @classmethod
    def for_repository(cls, query: SettingsQuery | None = None) -> Session:
        """The context of the repository git runs us in (its settings from ``query``, if it was started already)."""
        settings = (query or SettingsQuery()).settings()
        store = LfsObjectStore(settings.storage)
        fetch = partial(fetch_objects, store=store)
        context = cls(store, BlobReader(), fetch, max_delta_depth=settings.max_delta_depth, index=settings.index_file)
        context.display_only = only_displaying()
        context.skip_smudge = context.skip_smudge or settings.lazy
        context.hooks = settings.hooks
        return context

    def start_lookups(self) -> None:
        """Start the git processes that answer what a clean asks first (blobs and attributes), each on a thread of
        its own: the caller goes on meanwhile."""
        for reader in (self.blobs, self.attributes):
            if reader is not None:
                reader.start()

    def previous_blob(self, path: str) -> bytes | None:
        """Return what git stores for ``path`` in the index, or else in HEAD (None if neither has it)."""
        if self.blobs is None:
            return None
        for name in (f":{path}", f"HEAD:{path}"):
            data = self.blobs.read(name)
            if data is not None:
                return data
        return None

    def staged_metadata(self, path: str) -> CheckpointMetadata | None:
        """Return the metadata of ``path`` in the index, if it is ours."""
        return _parsed(self.blobs.read(f":{path}")) if self.blobs is not None else None

    def committed_metadata(self, path: str) -> CheckpointMetadata | None:
        """Return the metadata of ``path`` in HEAD, if it is ours."""
        return _parsed(self.blobs.read(f"HEAD:{path}")) if self.blobs is not None else None

    @property
    def previous(self) -> dict[str, TensorEntry]:
        """Tensor name -> its previous value in the file being cleaned, for storing a changed tensor as an update."""
        return self.file.previous

    def start_file(self, path: str, own: list[CheckpointMetadata | None] | None = None) -> KnownTensors:
        """Look up what ``path`` may reuse: its ``own`` earlier versions (by default, committed and staged), and
        every checkpoint the index and HEAD hold. Nothing from the files cleaned before is remembered."""
        self._refresh()
        if self.blobs is not None and self._checkpoints is None and self._listing is None:
            self._listing = Listing(".")  # git lists the index and HEAD while the file is read, in case it is needed
        if own is None:
            own = [self.committed_metadata(path), self.staged_metadata(path)]
        self.file = KnownTensors(path, own, self.checkpoints if self.blobs is not None else None)
        return self.file

    def checkpoints(self) -> Checkpoints:
        """The metadata of every checkpoint tracked in the index or HEAD: staged version first, then committed."""
        if self._checkpoints is None:
            assert self.blobs is not None
            listing, self._listing = self._listing or Listing("."), None
            staged, committed = listing.blobs()
            found: Checkpoints = {}
            for path in self._tracked(sorted(staged.keys() | committed.keys())):
                blobs = dict.fromkeys(blob for blob in (staged.get(path), committed.get(path)) if blob)
                versions = [_parsed(self.blobs.read(blob)) for blob in blobs]
                if any(versions):
                    found[path] = [metadata for metadata in versions if metadata is not None]
            self._checkpoints = found
        return self._checkpoints

    def _tracked(self, paths: list[str]) -> list[str]:
        """Those of ``paths`` that git hands to git-theta."""
        if self.attributes is None or len(paths) > ASKED_ONE_BY_ONE:
            return tracked_by_theta(paths)
        return [path for path in paths if self.attributes.values(path)[FILTER_ATTRIBUTE] == "theta"]

    def _refresh(self) -> None:
        """Forget what was read of the index and HEAD when either changed since (one process may serve a rebase)."""
        if self.blobs is None:
            return
        state = (_signature(self.index), self.blobs.object_id("HEAD"))
        if self._state is not None and state[0] != self._state[0]:
            self.blobs.close()  # git cat-file reads the index once: start it again to see the new one
            if self.attributes is not None:
                self.attributes.close()  # and attributes may come from the index
        if state != self._state:
            self._state, self._checkpoints = state, None
            self._drop_listing()  # listed before the change

    def explicit_checkpoint_type(self, path: str) -> str | None:
        """Return the format named by the environment or the ``theta-checkpoint`` attribute, if any."""
        if os.environ.get(CHECKPOINT_TYPE_ENV):
            return os.environ[CHECKPOINT_TYPE_ENV]
        if self.attributes is None:
            return None
        value = self.attributes.value(path)
        return None if value in ("unspecified", "unset", "set") else value

    def close(self) -> None:
        """Release the thread pool and git processes."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self.blobs is not None:
            self.blobs.close()
        if self.attributes is not None:
            self.attributes.close()
        self._drop_listing()

    def _drop_listing(self) -> None:
        if self._listing is not None:
            self._listing.stop()  # what it lists is not needed
            self._listing = None


def _signature(path: str | None) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path) if path is not None else None
    except FileNotFoundError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino) if info is not None else None


def _parsed(data: bytes | None) -> CheckpointMetadata | None:
    if data is None or not is_metadata(data):
        return None
    try:
        return CheckpointMetadata.loads(data)
    except MetadataError:
        return None
