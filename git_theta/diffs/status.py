"""Where each tracked checkpoint stands: weights or metadata only in the working tree, and its changed tensors."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from git_theta.checkpoints.base import Tensor
from git_theta.checkpoints.detect import detect
from git_theta.git.attributes import CHECKPOINT_ATTRIBUTE, check_attr, tracked_by_theta
from git_theta.git.catfile import BlobReader
from git_theta.git.repo import resolve_tree
from git_theta.git.trees import index_blobs, tree_blobs, unmerged_paths, worktree_changes
from git_theta.legacy.sniff import is_legacy_metadata
from git_theta.metadata import MAGIC, CheckpointMetadata, MetadataError, is_metadata
from git_theta.pipeline import Pool, ordered_map, workers

HEAD_SIZE = 4096
#: What the working tree holds for a checkpoint.
WEIGHTS, METADATA, DELETED, UNMERGED = "weights", "metadata only", "deleted", "unmerged"


class Changes(NamedTuple):
    """How many tensors changed, were added and were removed between two versions of a checkpoint."""

    changed: int = 0
    added: int = 0
    removed: int = 0

    def __bool__(self) -> bool:
        return any(self)


class CheckpointStatus(NamedTuple):
    """One tracked checkpoint: its working tree state, its tensors, and its changes (None when not compared)."""

    path: str
    worktree: str
    tensors: int
    #: Working tree against the index (only when the working tree holds weights).
    unstaged: Changes | None
    #: Index against HEAD; None for a checkpoint that HEAD does not have.
    staged: Changes | None
    legacy: bool = False


def worktree_state(file: Path) -> str:
    """``weights``, ``metadata only`` (git-theta's or Git-Theta 0.2's) or ``deleted``, from the file's first bytes."""
    try:
        with open(file, "rb") as stream:
            head = stream.read(HEAD_SIZE)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return DELETED
    return METADATA if head.startswith(MAGIC) or is_legacy_metadata(head) else WEIGHTS


def statuses(pathspecs: list[str], top: Path) -> Iterator[CheckpointStatus]:
    """The status of every tracked checkpoint of the index that matches ``pathspecs`` (paths from ``top``)."""
    cwd = str(top)
    staged = index_blobs(pathspecs, cwd)
    unmerged = unmerged_paths(pathspecs, cwd)
    committed = tree_blobs("HEAD", pathspecs, cwd) if resolve_tree("HEAD", cwd) else {}
    dirty = worktree_changes(pathspecs, cwd)
    with BlobReader(cwd) as blobs:
        for path in tracked_by_theta(sorted(staged.keys() | unmerged), cwd):
            if path in unmerged:
                yield CheckpointStatus(path, UNMERGED, 0, None, None)
                continue
            data = blobs.read(staged[path]) or b""
            if not is_metadata(data):
                if is_legacy_metadata(data):
                    yield CheckpointStatus(path, worktree_state(top / path), 0, None, None, legacy=True)
                continue  # committed before it was tracked: not ours
            head = blobs.read(committed[path]) if path in committed else None
            yield _status(path, _parsed(data, path), top, path in dirty, head)


def _status(path: str, metadata: CheckpointMetadata, top: Path, dirty: bool, head: bytes | None) -> CheckpointStatus:
    index = {name: entry.hash for name, entry in metadata.tensors.items()}
    state = worktree_state(top / path)
    unstaged = None
    if state == WEIGHTS:
        unstaged = _compare(index, worktree_hashes(top / path, path, metadata.checkpoint_type)) if dirty else Changes()
    staged = None
    if head is not None and is_metadata(head):
        staged = _compare({name: e.hash for name, e in _parsed(head, path).tensors.items()}, index)
    return CheckpointStatus(path, state, len(index), unstaged, staged)


def worktree_hashes(file: Path, path: str, recorded_type: str) -> dict[str, str]:
    """The SHA-256 of each tensor of the checkpoint ``file``, read as the clean filter reads it."""
    with open(file, "rb", buffering=1 << 20) as stream:
        head = stream.peek(HEAD_SIZE)[:HEAD_SIZE]  # type: ignore[attr-defined]  # a BufferedReader: open(..., 'rb')
        value = check_attr(CHECKPOINT_ATTRIBUTE, [path]).get(path, "unspecified")
        explicit = None if value in ("unspecified", "unset", "set") else value
        plugin = detect(path, head, explicit or recorded_type)
        _, tensors = plugin().read(stream, path)
        with Pool(workers(), "git-theta-hash-files") as executor:  # sha256 releases the GIL
            hashed = ordered_map(executor, _hash, tensors, workers() + 1, size=lambda t: len(t.data))
            return dict(hashed)


def _hash(tensor: Tensor) -> tuple[str, str]:
    return tensor.spec.name, "sha256:" + hashlib.sha256(memoryview(tensor.data).cast("B")).hexdigest()


def _compare(old: dict[str, str], new: dict[str, str]) -> Changes:
    changed = sum(1 for name in old.keys() & new.keys() if old[name] != new[name])
    return Changes(changed, len(new.keys() - old.keys()), len(old.keys() - new.keys()))


def _parsed(data: bytes, path: str) -> CheckpointMetadata:
    try:
        return CheckpointMetadata.loads(data)
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from exc
