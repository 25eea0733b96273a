"""``git theta merge --replay COMMIT``: run the merge that COMMIT records again and check it gives the same bytes.

A ``git theta merge`` commit is replayed from its parents, their octopus merge base and its trailers; a commit that
a merge driver made (merge, cherry-pick, revert, rebase), from the ``merge`` record of each checkpoint it changed,
whose ``inputs`` name the metadata merged. Nothing changes in the working tree, the index or HEAD; the merged
tensors are stored (they are already, when the merge was made in this repository).
"""

from __future__ import annotations

from typing import Any

from git_theta.git import merging
from git_theta.git.attributes import tracked_by_theta
from git_theta.git.runner import GitError
from git_theta.merges.base import MergeError
from git_theta.merges.nway import merge_checkpoint, merge_trees, metadata_of
from git_theta.merges.provenance import (
    PATTERN_TRAILER,
    STRATEGY_TRAILER,
    chooser_of,
    parse_trailers,
    trailer_recipe,
)
from git_theta.merges.recorded import checkpoint_at
from git_theta.metadata import CheckpointMetadata

#: The facts of a record that say what was merged (the rest is the recipe and the tally).
FACTS = ("by", "from", "inputs", "transfer", "weights")


def replay(rev: str, cwd: str) -> list[str]:
    """Replay the merge recorded in ``rev``; return the checkpoints found identical, or raise MergeError."""
    commit = merging.resolve_commit(rev, cwd)
    if commit is None:
        raise MergeError(f"{rev!r} is not a commit")
    parents = merging.commit_parents(commit, cwd)
    found = parse_trailers(merging.commit_message(commit, cwd))
    if STRATEGY_TRAILER in found or PATTERN_TRAILER in found:
        return _replay_trailers(commit, parents, found, cwd)
    recorded = _recorded_checkpoints(commit, parents[:1], cwd)
    if not recorded:
        raise MergeError(
            f"{rev} records no merge made by git-theta (no {STRATEGY_TRAILER} trailer, and no checkpoint it changed "
            "has a merge record)"
        )
    for path, metadata in recorded:
        _check(path, _replay_record(path, metadata.merge or {}, cwd), metadata, rev)
    return [path for path, _ in recorded]


def _replay_trailers(commit: str, parents: list[str], found: dict[str, list[str]], cwd: str) -> list[str]:
    strategy, patterns, weights = trailer_recipe(found)
    if weights is not None and len(weights) != len(parents):
        raise MergeError(f"{commit[:12]}: {len(weights)} weights are recorded for {len(parents)} parents")
    base = merging.octopus_base(parents, cwd)
    trees = [merging.tree_entries(parent, cwd) for parent in parents]
    changes = merge_trees(
        merging.tree_entries(base, cwd) if base else {}, trees, chooser_of(strategy, patterns), weights, cwd
    )
    expected, replayed = merging.tree_entries(commit, cwd), {**trees[0], **changes}
    paths = tracked_by_theta(sorted(set(expected) | set(replayed)), cwd)
    for path in sorted(set(expected) | set(replayed)):
        if expected.get(path) != replayed.get(path) and path not in paths:
            raise MergeError(f"{path} in {commit[:12]} is not what merging its parents gives; it was changed by hand")
    for path in paths:
        if expected.get(path) != replayed.get(path):
            _check(
                path,
                _entry_metadata(replayed.get(path), path, cwd),
                _entry_metadata(expected.get(path), path, cwd),
                commit[:12],
            )
    return paths


def _recorded_checkpoints(commit: str, parents: list[str], cwd: str) -> list[tuple[str, CheckpointMetadata]]:
    """The checkpoints that ``commit`` changed (from its first parent) and that hold a merge record."""
    tree = merging.tree_entries(commit, cwd)
    before = merging.tree_entries(parents[0], cwd) if parents else {}
    changed = [path for path, entry in tree.items() if before.get(path) != entry]
    found = [(path, checkpoint_at(commit, path, cwd)) for path in tracked_by_theta(changed, cwd)]
    return [(path, metadata) for path, metadata in found if metadata is not None and metadata.merge is not None]


def _replay_record(path: str, record: dict[str, Any], cwd: str) -> CheckpointMetadata:
    inputs = record.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 3:
        raise MergeError(f"{path}: its merge record names no inputs to replay")
    try:
        base = metadata_of(("100644", inputs[0]), path, cwd) if inputs[0] else None
        sides = [metadata_of(("100644", blob), path, cwd) for blob in inputs[1:]]
    except GitError as exc:  # a blob collected as garbage, say
        raise MergeError(f"{path}: a version it merged is no longer in the repository ({exc})") from exc
    chooser = chooser_of(record.get("strategy"), record.get("patterns") or [])
    facts = {key: record.get(key) for key in FACTS}
    return merge_checkpoint(path, base, sides, chooser, record.get("weights"), facts)


def _entry_metadata(entry: merging.Entry | None, path: str, cwd: str) -> CheckpointMetadata | None:
    return metadata_of(entry, path, cwd) if entry is not None else None


def _check(path: str, replayed: CheckpointMetadata | None, recorded: CheckpointMetadata | None, rev: str) -> None:
    """Raise MergeError unless both describe the same checkpoint, with the same merge record."""
    if replayed is None or recorded is None:
        raise MergeError(f"{path}: the replay {'drops' if replayed is None else 'adds'} the checkpoint of {rev}")
    if replayed.same_checkpoint(recorded) and replayed.merge == recorded.merge:
        return
    differ = [
        name
        for name in dict.fromkeys([*recorded.tensors, *replayed.tensors])
        if _key(recorded, name) != _key(replayed, name)
    ]
    what = f"{len(differ)} tensor(s) (first: {differ[0]!r})" if differ else "its format or merge record"
    raise MergeError(f"{path}: the replay differs from {rev} in {what}; the merge cannot be reproduced here")


def _key(metadata: CheckpointMetadata, name: str) -> tuple[str, tuple[int, ...], str] | None:
    entry = metadata.tensors.get(name)
    return None if entry is None else (entry.dtype, entry.shape, entry.hash)
