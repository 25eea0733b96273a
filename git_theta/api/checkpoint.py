"""``open_checkpoint``: any version of a tracked checkpoint (or sharded model) as a lazy mapping of its tensors.

Opening reads the metadata git stores for the checkpoint (one small blob per file) and nothing else: names, dtypes
and shapes come from it. A tensor is read from its object when it is looked up, checked against its SHA-256 as a
checkout checks it, and downloaded through git-lfs first when the object is not stored locally. Nothing is cached,
so memory holds the tensors the caller keeps and no more.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from git_theta.api.frameworks import check_framework, convert
from git_theta.diffs.models import Version, named_unit, version_at
from git_theta.diffs.store import ObjectReader
from git_theta.errors import UsageError
from git_theta.git.catfile import BlobReader
from git_theta.git.repo import toplevel
from git_theta.git.runner import run
from git_theta.git.trees import index_blobs, tree_blobs
from git_theta.legacy.sniff import is_legacy_metadata
from git_theta.metadata import is_metadata


class CheckpointNotFoundError(UsageError):
    """The path names no checkpoint git-theta stores at that revision."""


class TensorInfo(NamedTuple):
    """What the metadata says of a tensor: its dtype (safetensors' name, ``F32``, ``BF16``), shape, size, file and
    the SHA-256 of its exact bytes (equal hashes, equal tensors)."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    shard: str
    hash: str


class StoredCheckpoint(Mapping[str, Any]):
    """The tensors of one version of a checkpoint, read from their objects when looked up (see the module doc)."""

    def __init__(self, version: Version, rev: str | None, reader: ObjectReader, framework: str) -> None:
        self.path = version.path
        self.rev = rev
        self.shards = version.shards
        self.framework = framework
        self._entries = version.entries()
        self._reader = reader

    def __getitem__(self, name: str) -> Any:
        shard, entry = self._entries[name]
        return convert(self._reader.load(shard, name, entry), entry.dtype, entry.shape, self.framework)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        at = "the index" if self.rev is None else self.rev
        return f"<StoredCheckpoint {self.path} at {at}: {len(self)} tensors, {len(self.shards)} file(s)>"

    def info(self, name: str) -> TensorInfo:
        """The dtype, shape, size and file of tensor ``name``, from the metadata (no object is read)."""
        shard, entry = self._entries[name]
        return TensorInfo(entry.dtype, entry.shape, entry.nbytes, shard, entry.hash)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor's shape, from the metadata."""
        return {name: entry.shape for name, (_, entry) in self._entries.items()}

    @property
    def dtypes(self) -> dict[str, str]:
        """Every tensor's dtype (``F32``, ``BF16``, ...), from the metadata."""
        return {name: entry.dtype for name, (_, entry) in self._entries.items()}

    def prefetch(self, names: Iterable[str] | None = None) -> None:
        """Download, in one git-lfs batch, the objects of these tensors (all by default) that are not stored locally."""
        chosen = self._entries if names is None else {name: self._entries[name] for name in names}
        self._reader.require(entry for _, entry in chosen.values())


def open_checkpoint(
    path: str, rev: str | None = "HEAD", repo: str | os.PathLike[str] = ".", *, framework: str = "numpy"
) -> StoredCheckpoint:
    """Open the checkpoint at ``path`` (relative to the repository root; a sharded model's directory or index json
    too) as it is at ``rev`` (None: the index); tensors as numpy arrays, or torch tensors with ``framework="torch"``.
    """
    check_framework(framework)
    cwd = str(repository_root(repo))
    path = posixpath.normpath(path.replace(os.sep, "/")).strip("/") or "."
    tree = _tree(rev, cwd)
    listing = tree_blobs(tree, [path], cwd) if tree is not None else index_blobs([path], cwd)
    where = "the index" if rev is None else rev
    unit = named_unit(path, listing, cwd, where)
    with BlobReader(cwd) as blobs:
        version = version_at(partial(_read, blobs, tree), unit)
    _check_stored(version, where)
    return StoredCheckpoint(version, rev, ObjectReader.for_repository(cwd=cwd), framework)


def repository_root(repo: str | os.PathLike[str]) -> Path:
    """The top of the working tree that ``repo`` (any directory in it) belongs to."""
    if not os.path.isdir(repo):
        raise UsageError(f"{os.fspath(repo)}: no such directory (repo= names a directory inside a git repository)")
    return toplevel(os.fspath(repo))


def _tree(rev: str | None, cwd: str) -> str | None:
    """The tree ``rev`` names, resolved once so that the checkpoint stays that version; None for the index."""
    if rev is None:
        return None
    result = run("rev-parse", "--verify", "--quiet", f"{rev}^{{tree}}", cwd=cwd, check=False)
    if result.returncode != 0:
        raise UsageError(f"unknown revision {rev!r}")
    return result.stdout.decode().strip()


def _read(blobs: BlobReader, tree: str | None, path: str) -> bytes:
    return blobs.read(f"{tree or ''}:{path}") or b""


def _check_stored(version: Version, where: str) -> None:
    """Say clearly when the files are missing, or not stored by this git-theta."""
    if not version.shards or not any(version.contents):
        raise CheckpointNotFoundError(f"{version.path}: no such checkpoint at {where}")
    for shard, data in zip(version.shards, version.contents, strict=True):
        if not data:
            raise CheckpointNotFoundError(f"{shard}: no such file at {where} (a shard {version.path} names)")
        if is_legacy_metadata(data):
            raise CheckpointNotFoundError(
                f"{shard} at {where} is stored by Git-Theta 0.2; read it after git theta migrate, or check it out"
            )
        if not is_metadata(data):
            raise CheckpointNotFoundError(
                f"{shard} at {where} is not stored by git-theta (not tracked, or committed before it was)"
            )
