"""``git theta log``: for each commit that changed a checkpoint, how it changed from the commit's first parent."""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from git_theta.checkpoints.sharded import is_index
from git_theta.diffs.compare import diff_sides
from git_theta.diffs.models import changed_across, version_at
from git_theta.diffs.result import CheckpointDiff
from git_theta.diffs.store import ObjectReader
from git_theta.git.catfile import BlobReader
from git_theta.git.trees import Commit, path_history


def checkpoint_history(
    revisions: list[str], path: str, max_count: int | None, top: Path
) -> Iterator[tuple[Commit, CheckpointDiff]]:
    """Yield each commit that changed ``path`` (a checkpoint, or a sharded model's index json), newest first, with its
    comparison to its first parent."""
    cwd = str(top)
    reader = ObjectReader.for_repository(cwd=cwd)
    sharded = is_index(path)  # its history is its directory's, less the commits that left the model as it was
    limit = None if sharded else max_count
    with BlobReader(cwd) as blobs:
        shown = 0
        for commit in path_history(revisions, (posixpath.dirname(path) or ".") if sharded else path, limit, cwd):
            if max_count is not None and shown >= max_count:
                return
            old = version_at(partial(_read, blobs, commit.parent), path)
            new = version_at(partial(_read, blobs, commit.oid), path)
            if old == new:
                continue
            reader.require(changed_across(old.tensors(), new.tensors()))
            old_side = old.side(reader, cwd)
            diff = diff_sides(path, old_side, new.side(reader, cwd, old_side.checkpoint_type))
            if sharded:
                diff.old_shards, diff.new_shards = list(old.shards), list(new.shards)
            shown += 1
            yield commit, diff


def _read(blobs: BlobReader, rev: str | None, path: str) -> bytes:
    return (blobs.read(f"{rev}:{path}") if rev else None) or b""


def largest_change(diff: CheckpointDiff) -> str:
    """``largest rel <value> (<tensor>)`` for the tensor that changed most relative to its norm, or ''."""
    measured = [t for t in diff.tensors if t.change is not None and math.isfinite(t.change.rel)]
    if not measured:
        return ""
    top = max(measured, key=lambda t: t.rel)
    return f"largest rel {top.rel:.3e} ({top.name})"
