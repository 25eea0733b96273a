"""``git theta log``: for each commit that changed a checkpoint, how it changed from the commit's first parent."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from git_theta.diffs.compare import diff_sides
from git_theta.diffs.result import CheckpointDiff
from git_theta.diffs.sides import changed_entries, side_of_bytes
from git_theta.diffs.store import ObjectReader
from git_theta.git.catfile import BlobReader
from git_theta.git.trees import Commit, path_history


def checkpoint_history(
    revisions: list[str], path: str, max_count: int | None, top: Path
) -> Iterator[tuple[Commit, CheckpointDiff]]:
    """Yield each commit that changed ``path``, newest first, with its comparison to its first parent."""
    cwd = str(top)
    reader = ObjectReader.for_repository()
    with BlobReader(cwd) as blobs:
        for commit in path_history(revisions, path, max_count, cwd):
            old_data = (blobs.read(f"{commit.parent}:{path}") if commit.parent else None) or b""
            new_data = blobs.read(f"{commit.oid}:{path}") or b""
            reader.require(changed_entries(path, old_data, new_data))
            old = side_of_bytes(old_data, path, reader, cwd=cwd)
            new = side_of_bytes(new_data, path, reader, old.checkpoint_type, cwd)
            yield commit, diff_sides(path, old, new)


def largest_change(diff: CheckpointDiff) -> str:
    """``largest rel <value> (<tensor>)`` for the tensor that changed most relative to its norm, or ''."""
    measured = [t for t in diff.tensors if t.change is not None and math.isfinite(t.change.rel)]
    if not measured:
        return ""
    top = max(measured, key=lambda t: t.rel)
    return f"largest rel {top.rel:.3e} ({top.name})"
