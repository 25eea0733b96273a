"""``git theta diff`` between revisions, the index and the working tree, as ``git diff`` chooses them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from git_theta.diffs.compare import Side, diff_sides
from git_theta.diffs.result import CheckpointDiff
from git_theta.diffs.sides import changed_entries, side_of_bytes, side_of_file
from git_theta.diffs.store import ObjectReader
from git_theta.errors import UsageError
from git_theta.git.attributes import tracked_by_theta
from git_theta.git.catfile import BlobReader
from git_theta.git.repo import resolve_tree
from git_theta.git.trees import EMPTY_TREE, index_blobs, merge_base, tree_blobs, worktree_changes

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


@dataclass(frozen=True)
class _Pair:
    """The two contents of one checkpoint; ``new`` is None when it is to be read from the working tree."""

    path: str
    old: bytes
    new: bytes | None


def compare_targets(old: Target, new: Target, pathspecs: list[str], top: Path) -> list[CheckpointDiff]:
    """Compare every tracked checkpoint that differs between ``old`` and ``new``."""
    reader = ObjectReader.for_repository()
    with BlobReader(str(top)) as blobs:
        pairs = _pairs(old, new, pathspecs, top, blobs)
        reader.require(e for p in pairs if p.new is not None for e in changed_entries(p.path, p.old, p.new))
        diffs = [_compare(pair, reader, top) for pair in pairs]
    return [diff for diff in diffs if diff.tensors or diff.old_tensors != diff.new_tensors]


def _pairs(old: Target, new: Target, pathspecs: list[str], top: Path, blobs: BlobReader) -> list[_Pair]:
    """The tracked checkpoints whose content may differ, with both contents (metadata, usually)."""
    cwd = str(top)
    old_blobs, new_blobs = _listing(old, pathspecs, cwd), _listing(new, pathspecs, cwd)
    # A file whose stat data matches the index is the index's blob, as git diff assumes: it need not be read.
    dirty = worktree_changes(pathspecs, cwd) if new.label == WORKTREE else set()
    paths = sorted(set(old_blobs) | set(new_blobs))
    tracked = tracked_by_theta(paths, cwd)
    _check_pathspecs(pathspecs, paths, tracked, top, (old, new))
    pairs = []
    for path in tracked:
        old_oid, new_oid = old_blobs.get(path), new_blobs.get(path)
        if path in dirty:
            pairs.append(_Pair(path, _blob(blobs, old_oid), None))
        elif old_oid != new_oid:
            pairs.append(_Pair(path, _blob(blobs, old_oid), _blob(blobs, new_oid)))
    return pairs


def _compare(pair: _Pair, reader: ObjectReader, top: Path) -> CheckpointDiff:
    cwd = str(top)
    old = side_of_bytes(pair.old, pair.path, reader, cwd=cwd)
    if pair.new is not None:
        new = side_of_bytes(pair.new, pair.path, reader, old.checkpoint_type, cwd)
    elif (top / pair.path).is_file():
        new = side_of_file(top / pair.path, pair.path, reader, old.checkpoint_type, cwd)
    else:
        new = Side.absent()
    return diff_sides(pair.path, old, new)


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
