"""``git theta merge``: an N-way merge of revisions into one merge commit, or resolving conflicts in place."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from git_theta.git import merging
from git_theta.git.attributes import tracked_by_theta
from git_theta.merges.base import MergeError
from git_theta.merges.choose import Chooser
from git_theta.merges.driver import conflict_message, summary
from git_theta.merges.engine import merge_metadata
from git_theta.merges.provenance import record, trailers, with_trailers
from git_theta.merges.tensors import StoreTensors
from git_theta.metadata import CheckpointMetadata, MetadataError, is_metadata

if TYPE_CHECKING:
    from git_theta.storage.objects import ObjectStore


def merge_revisions(
    revs: list[str],
    chooser: Chooser,
    weights: dict[str, float],
    message: str | None,
    cwd: str,
    soup: tuple[str, list[str]] | None = None,
) -> str:
    """Merge HEAD with ``revs`` (model soup, TIES over many fine-tunes...) and commit it with all of them as parents;
    the message's trailers record how (``soup``: the strategy name and trailers of a greedy soup)."""
    head = merging.resolve_commit("HEAD", cwd)
    commits = [merging.resolve_commit(rev, cwd) for rev in revs]
    if head is None or None in commits:
        bad = "HEAD" if head is None else revs[commits.index(None)]
        raise MergeError(f"{bad!r} is not a commit; name branches, tags or commits to merge")
    parents = list(dict.fromkeys([head, *(commit for commit in commits if commit is not None)]))
    if len(parents) < 2:
        raise MergeError("nothing to merge: the revisions are all HEAD")
    if not merging.is_clean(cwd):
        raise MergeError("the index or working tree has changes; commit or stash them before git theta merge")
    side_weights = _weights(weights, parents, cwd) if weights else None
    base = merging.octopus_base(parents, cwd)
    trees = [merging.tree_entries(commit, cwd) for commit in parents]
    base_tree = merging.tree_entries(base, cwd) if base else {}
    changes = merge_trees(base_tree, trees, chooser, side_weights, cwd)
    tree = merging.write_tree(head, changes, cwd)
    names = ", ".join(revs)
    label, extra = soup if soup else (None, [])
    text = with_trailers(message or f"Merge {names} (git theta merge)", trailers(chooser, side_weights, extra, label))
    commit = merging.commit_tree(tree, parents, text, cwd)
    merging.advance_head(head, commit, f"git theta merge: {names}", cwd)
    return commit


def resolve_in_place(chooser: Chooser, cwd: str) -> list[str]:
    """Resolve the checkpoints a merge, cherry-pick, revert or rebase left in conflict; return their paths."""
    from git_theta.git.operation import stopped_operation

    unmerged = merging.unmerged_entries(cwd)
    paths = tracked_by_theta(sorted(unmerged), cwd)
    if not paths:
        raise MergeError("no checkpoint is in conflict; to merge revisions, name them: git theta merge REV...")
    operation = stopped_operation(cwd)
    commits = [operation.ours, operation.theirs] if operation.ours and operation.theirs else None
    for path in paths:
        stages = unmerged[path]
        if 2 not in stages or 3 not in stages:
            raise MergeError(f"{path} was deleted on one side; keep it (git add) or delete it (git rm) by hand")
        base = metadata_of(stages[1], path, cwd) if 1 in stages else None
        sides = [metadata_of(stages[2], path, cwd), metadata_of(stages[3], path, cwd)]
        inputs = [stages[1][1] if 1 in stages else None, stages[2][1], stages[3][1]]
        facts = {"by": operation.kind, "from": commits, "inputs": inputs, "transfer": operation.is_pick or None}
        blob = merging.write_blob(merge_checkpoint(path, base, sides, chooser, None, facts).dumps(), cwd)
        merging.resolve_path(path, (stages[2][0], blob), cwd)
    return paths


def merge_trees(
    base: dict[str, merging.Entry],
    trees: list[dict[str, merging.Entry]],
    chooser: Chooser,
    weights: list[float] | None,
    cwd: str,
    store: ObjectStore | None = None,
) -> dict[str, merging.Entry | None]:
    """The changes to HEAD's tree: a path changed by one side (or alike) is taken; checkpoints are merged (their
    tensors stored in ``store``, by default the repository's). A checkpoint that one side changed is merged too when
    the strategy scales lone changes (LiNeS): a single fine-tune then gets the post-training edit."""
    changes: dict[str, merging.Entry | None] = {}
    conflicted, lone = [], {}
    rescales = chooser.rescales_lone_changes()
    for path in dict.fromkeys([*trees[0], *(p for tree in trees[1:] for p in tree), *base]):
        versions = [tree.get(path) for tree in trees]
        changed = [version for version in versions if version != base.get(path)]
        if len(set(changed)) == 1:
            if rescales and None not in versions and path in base:
                lone[path] = changed[0]
            elif changed[0] != versions[0]:
                changes[path] = changed[0]
        elif changed:
            conflicted.append(path)
    rescaled = tracked_by_theta(list(lone), cwd) if lone else []
    for path, entry in lone.items():
        if path not in rescaled and entry != trees[0].get(path):
            changes[path] = entry
    conflicted += rescaled
    theta_paths = set(tracked_by_theta(conflicted, cwd))
    for path in conflicted:
        versions = [tree.get(path) for tree in trees]
        present = [version for version in versions if version is not None]
        if path not in theta_paths or None in versions:
            raise MergeError(
                f"{path} changed differently on several sides and git theta merge merges only checkpoints "
                "(present on every side); merge that file with git merge first"
            )
        ancestor = base.get(path)
        base_metadata = metadata_of(ancestor, path, cwd) if ancestor else None
        sides = [metadata_of(version, path, cwd) for version in present]
        merged = merge_checkpoint(path, base_metadata, sides, chooser, weights, store=store)
        changes[path] = (present[0][0], merging.write_blob(merged.dumps(), cwd))
    return changes


def merge_checkpoint(
    path: str,
    base: CheckpointMetadata | None,
    sides: list[CheckpointMetadata],
    chooser: Chooser,
    weights: list[float] | None,
    facts: dict[str, Any] | None = None,
    store: ObjectStore | None = None,
) -> CheckpointMetadata:
    """Merge one checkpoint; ``facts``: record the merge in it (provenance.py), and transfer in a pick."""
    from git_theta.session.context import Session

    context = Session.for_repository()
    context.store = store or context.store
    context.start_file(path, [sides[0]])  # merged tensors are stored as updates of ours where that is cheaper
    transfer = bool(facts and facts.get("transfer"))
    try:
        outcome = merge_metadata(path, base, sides, chooser, StoreTensors(context, path), weights, transfer)
    finally:
        context.close()
    if outcome.metadata is None:
        raise MergeError(conflict_message(path, outcome, "choose one with --strategy or --pattern GLOB=STRATEGY"))
    if facts is not None:
        outcome.metadata.merge = record(chooser, outcome.merged, facts)
    if outcome.merged:
        print(f"git-theta: {path}: merged {summary(outcome)}", file=sys.stderr)
    return outcome.metadata


def metadata_of(entry: merging.Entry, path: str, cwd: str) -> CheckpointMetadata:
    """The metadata that the blob of a tree or index entry holds."""
    data = merging.read_blob(entry[1], cwd)
    if not is_metadata(data):
        raise MergeError(f"{path}: a version is not git-theta metadata (committed before it was tracked?)")
    try:
        return CheckpointMetadata.loads(data)
    except MetadataError as exc:
        raise MergeError(f"{path}: {exc}") from exc


def _weights(weights: dict[str, float], parents: list[str], cwd: str) -> list[float]:
    by_commit: dict[str, float] = {}
    for rev, weight in weights.items():
        commit = merging.resolve_commit(rev, cwd)
        if commit not in parents:
            raise MergeError(f"--weight {rev}={weight:g}: {rev!r} is not one of the revisions merged (or HEAD)")
        by_commit[commit] = weight
    return [by_commit.get(commit, 1.0) for commit in parents]
