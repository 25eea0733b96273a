"""``git theta diff`` between revisions, the index and the working tree, as ``git diff`` chooses them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from git_theta.checkpoints.sharded import is_index, shard_paths, shards_if_index
from git_theta.diffs.compare import Side, diff_sides
from git_theta.diffs.models import Unit, changed_across, combined, group
from git_theta.diffs.result import CheckpointDiff
from git_theta.diffs.sides import metadata_of, side_of_bytes, side_of_file
from git_theta.diffs.store import ObjectReader
from git_theta.errors import UsageError
from git_theta.git.attributes import tracked_by_theta
from git_theta.git.catfile import BlobReader
from git_theta.git.repo import resolve_tree
from git_theta.git.trees import EMPTY_TREE, index_blobs, merge_base, tree_blobs, worktree_changes
from git_theta.metadata import TensorEntry, is_metadata

INDEX, WORKTREE = "index", "working tree"


@dataclass(frozen=True)
class Target:
    """One side of a comparison: a revision (``rev``), the index, or the working tree."""

    label: str
    rev: str | None = None


def choose_targets(revisions: list[str], cached: bool, cwd: str) -> tuple[Target, Target]:
    """The two sides git diff would compare for these arguments (``A..B`` and ``A...B`` included)."""
    if len(revisions) == 1 and "..." in revisions[0]:
        first, second = (part or "HEAD" for part in revisions[0].split("...", 1))
        revisions = [merge_base(_checked(first, cwd), _checked(second, cwd), cwd), second]
    elif len(revisions) == 1 and ".." in revisions[0]:
        revisions = [part or "HEAD" for part in revisions[0].split("..", 1)]
    for rev in revisions:
        _checked(rev, cwd)
    if len(revisions) > 2 or (cached and len(revisions) == 2):
        raise UsageError("give at most two revisions (or one with --cached)")
    if len(revisions) == 2:
        return Target(revisions[0], revisions[0]), Target(revisions[1], revisions[1])
    if cached:
        base = revisions[0] if revisions else ("HEAD" if resolve_tree("HEAD", cwd) else EMPTY_TREE)
        return Target(base, base), Target(INDEX)
    if revisions:
        return Target(revisions[0], revisions[0]), Target(WORKTREE)
    return Target(INDEX), Target(WORKTREE)


@dataclass
class _Contents:
    """The files of one target: blobs by id; for the working tree, the files that changed on disk."""

    target: Target
    listing: dict[str, str]
    dirty: set[str]
    blobs: BlobReader
    top: Path
    #: Shards that an index changed in the working tree names (new files are read from disk, though not added).
    named: set[str] = field(default_factory=set)
    #: Contents read so far (metadata and indexes: small), by path.
    cache: dict[str, bytes] = field(default_factory=dict)

    def on_disk(self, path: str) -> bool:
        """Tell whether ``path`` is read from the working tree (changed there, or a shard its changed index names)."""
        if self.target.label != WORKTREE or not (self.top / path).is_file():
            return False
        return path in self.dirty or (path not in self.listing and path in self.named)

    def read(self, path: str) -> bytes:
        """The content of ``path`` on this side (b'' when absent)."""
        if path not in self.cache:
            on_disk = self.on_disk(path)
            self.cache[path] = (self.top / path).read_bytes() if on_disk else _blob(self.blobs, self.listing.get(path))
        return self.cache[path]

    def shards(self, index: str, strict: bool = False) -> list[str] | None:
        """The shards the index json names on this side, or None when it is not there (or, unless ``strict``, is
        some other json)."""
        data = self.read(index) if index in self.listing or self.on_disk(index) else b""
        shards = shard_paths(index, data) if strict and data else shards_if_index(index, data)
        if not shards:
            return None
        if self.on_disk(index):
            self.named.update(shards)
        return shards


def compare_targets(old: Target, new: Target, pathspecs: list[str], top: Path) -> list[CheckpointDiff]:
    """Compare every tracked checkpoint (a sharded one as one model) that differs between ``old`` and ``new``."""
    reader = ObjectReader.for_repository(cwd=str(top))
    with BlobReader(str(top)) as blobs:
        sides = _contents(old, pathspecs, top, blobs), _contents(new, pathspecs, top, blobs)
        units = [unit for unit in _units(sides, pathspecs, top) if _differs(unit, *sides)]
        reader.require(entry for unit in units for entry in _to_decode(unit, *sides))
        diffs = [_compare(unit, *sides, reader, top) for unit in units]
    return [diff for diff in diffs if diff.tensors or diff.old_tensors != diff.new_tensors]


def _contents(target: Target, pathspecs: list[str], top: Path, blobs: BlobReader) -> _Contents:
    cwd = str(top)
    # A file whose stat data matches the index is the index's blob, as git diff assumes: it need not be read.
    dirty = worktree_changes(pathspecs, cwd) if target.label == WORKTREE else set()
    contents = _Contents(target, _listing(target, pathspecs, cwd), dirty, blobs, top)
    named = [spec for spec in pathspecs if is_index(spec)]  # a model named by its index: list its shards too
    shards = [shard for spec in named for shard in contents.shards(spec, strict=True) or ()]
    if shards:
        contents.listing.update(_listing(target, shards, cwd))
        contents.dirty.update(worktree_changes(shards, cwd) if target.label == WORKTREE else ())
    return contents


def _units(sides: tuple[_Contents, _Contents], pathspecs: list[str], top: Path) -> list[Unit]:
    """What to compare: tracked checkpoints alone, shards with their index as one model."""
    old, new = sides
    paths = sorted(set(old.listing) | set(new.listing))
    units = group(paths, lambda index, side: sides[side].shards(index), partial(tracked_by_theta, cwd=str(top)))
    _check_pathspecs(pathspecs, paths, [unit.path for unit in units], top, (old.target, new.target))
    return units


def _differs(unit: Unit, old: _Contents, new: _Contents) -> bool:
    if unit.old != unit.new:
        return True
    return any(old.listing.get(path) != new.listing.get(path) or new.on_disk(path) for path in unit.files)


def _to_decode(unit: Unit, old: _Contents, new: _Contents) -> list[TensorEntry]:
    """The tensor entries the comparison of ``unit`` will decode from objects (none read from disk)."""
    if any(new.on_disk(path) for path in unit.new):
        return []
    return changed_across(_stored(unit.old, old), _stored(unit.new, new))


def _stored(paths: tuple[str, ...], contents: _Contents) -> dict[str, TensorEntry]:
    tensors = {}
    for path in paths:
        data = contents.read(path)
        if is_metadata(data):
            tensors.update(metadata_of(data, path).tensors)
    return tensors


def _compare(unit: Unit, old: _Contents, new: _Contents, reader: ObjectReader, top: Path) -> CheckpointDiff:
    cwd = str(top)
    old_side = combined([side_of_bytes(old.read(path), path, reader, cwd=cwd) for path in unit.old])
    new_sides = []
    for path in unit.new:
        if new.on_disk(path):
            new_sides.append(side_of_file(top / path, path, reader, old_side.checkpoint_type, cwd))
        else:
            new_sides.append(side_of_bytes(new.read(path), path, reader, old_side.checkpoint_type, cwd))
    result = diff_sides(unit.path, old_side, combined(new_sides) if new_sides else Side.absent())
    if unit.sharded:
        result.old_shards, result.new_shards = list(unit.old), list(unit.new)
    return result


def _checked(rev: str, cwd: str) -> str:
    if resolve_tree(rev, cwd) is None:
        raise UsageError(f"unknown revision {rev!r}")
    return rev


def _listing(target: Target, pathspecs: list[str], cwd: str) -> dict[str, str]:
    if target.rev is not None:
        return tree_blobs(target.rev, pathspecs, cwd)
    return index_blobs(pathspecs, cwd)  # the working tree is the index's files, as for git diff


def _blob(blobs: BlobReader, oid: str | None) -> bytes:
    data = blobs.read(oid) if oid is not None else None
    return data if data is not None else b""


def _check_pathspecs(
    pathspecs: list[str], paths: list[str], tracked: list[str], top: Path, targets: tuple[Target, Target]
) -> None:
    """Say clearly when a path the user named is not a tracked checkpoint on either side."""
    for spec in pathspecs:
        if any(c in spec for c in "*?[") or spec.startswith(":"):
            continue  # a pattern: matching nothing simply shows nothing, as in git diff
        prefix = "" if spec in (".", "") else spec.rstrip("/") + "/"
        if any(path == spec or path.startswith(prefix) for path in tracked):
            continue
        if spec in paths or os.path.isfile(top / spec):
            raise UsageError(f"{spec} is not tracked by git-theta (track it with: git theta track PATTERN)")
        sides = f"{targets[0].label} or {targets[1].label}"
        raise UsageError(f"{spec}: no tracked checkpoint at this path in {sides}")
