"""The merge of one checkpoint's metadata, tensor by tensor (rules in docs/merges.md).

For each tensor, the sides' versions are compared with the common ancestor's by hash, dtype and shape:

- no side changed it, or the sides that changed it agree: take that version (its entry is copied whole);
- sides changed it differently: a conflict, resolved by the strategy the chooser names; only those tensors are
  decoded, merged and stored, one at a time.

A tensor added or deleted counts as a change like any other; "deleted here, changed there" and versions of different
dtype or shape can only be resolved by taking one side (``ours``, ``theirs``, ``base``).

A tensor that only one side changed goes through the strategy too when the strategy would not give that change
back (``MergeStrategy.rescales_lone_change``: a LiNeS scale; in a pick, a ``lambda``), so that the whole change is
scaled; in a pick, only when the picked commit changed it and ours did not.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple, Protocol

from git_theta.checkpoints.base import TensorSpec
from git_theta.merges.base import Conflict, MergeContext, MergeError, MergeStrategy, SelectStrategy
from git_theta.merges.lines import block_count
from git_theta.merges.tensors import TensorIO, merge_tensor
from git_theta.metadata import CheckpointMetadata, TensorEntry


class Chooser(Protocol):
    """Names the strategy of each conflicting tensor (see merges/choose.py)."""

    def __call__(self, path: str, conflict: Conflict) -> MergeStrategy | None:
        """Return the strategy to use for ``conflict`` in ``path``, or None to leave it unresolved."""
        ...

    def preset(self, conflict: Conflict) -> MergeStrategy | None:
        """The strategy configured for ``conflict`` (patterns, default), without asking anyone."""
        ...


class Outcome(NamedTuple):
    """The merged metadata, or the conflicts left unresolved (tensor name, why) when there is none."""

    metadata: CheckpointMetadata | None
    unresolved: list[tuple[str, str]]
    merged: Counter[str]


def merge_metadata(
    path: str,
    base: CheckpointMetadata | None,
    sides: list[CheckpointMetadata],
    choose: Chooser,
    tensors: TensorIO,
    weights: list[float] | None = None,
    transfer: bool = False,
) -> Outcome:
    """Merge ``sides`` (ours first) of the checkpoint at ``path`` against their common ancestor ``base``;
    ``transfer``: a pick, whose sides are ours and the picked commit (merges/task_vectors.py)."""
    primary = _primary_side(path, base, sides)
    checkpoint_type = sides[primary].checkpoint_type
    owner = _format_owner(base, sides, primary)
    names = _names([sides[owner], *sides, *([base] if base else [])])
    context = MergeContext(transfer, block_count(names))
    taken: dict[str, TensorEntry | None] = {}
    conflicts: list[Conflict] = []
    for name in names:
        entries = tuple(side.tensors.get(name) for side in sides)
        ancestor = base.tensors.get(name) if base else None
        changed = [entry for entry in entries if _key(entry) != _key(ancestor)]
        taken[name] = None
        if not changed:
            taken[name] = entries[0]
        elif len({_key(entry) for entry in changed}) > 1:
            conflicts.append(Conflict(name, ancestor, entries))
        elif _rescaled(choose, Conflict(name, ancestor, entries), transfer):
            conflicts.append(Conflict(name, ancestor, entries))
        else:
            taken[name] = changed[0]
    chosen, unresolved = _choose(path, conflicts, choose)
    if unresolved:
        return Outcome(None, unresolved, Counter())
    numeric = [(c, s) for c, s in chosen if not isinstance(s, SelectStrategy)]
    tensors.require(e for c, s in numeric for e in (*c.sides, *([c.base] if s.needs_base else [])) if e is not None)
    merged: Counter[str] = Counter()
    for conflict, strategy in chosen:
        merged[strategy.describe()] += 1
        if isinstance(strategy, SelectStrategy):
            index = strategy.pick(len(sides))
            taken[conflict.name] = conflict.base if index is None else conflict.sides[index]
        else:
            taken[conflict.name] = merge_tensor(
                strategy, conflict, _weights(strategy, weights, len(sides)), tensors, path, context
            )
    result = {name: entry for name, entry in taken.items() if entry is not None}
    return Outcome(_assemble(checkpoint_type, sides[owner], result, tensors), [], merged)


def _rescaled(choose: Chooser, conflict: Conflict, transfer: bool) -> bool:
    """Tell whether a tensor that one side changed (or several alike) must go through its strategy anyway."""
    if transfer and _key(conflict.sides[0]) != _key(conflict.base):
        return False  # ours already has the change (or its own): the picked commit changed nothing more
    strategy = choose.preset(conflict)
    return strategy is not None and strategy.unsuitable(conflict) is None and strategy.rescales_lone_change(transfer)


def _key(entry: TensorEntry | None) -> tuple[str, str, tuple[int, ...]] | None:
    return None if entry is None else (entry.hash, entry.dtype, entry.shape)


def _names(metadata: list[CheckpointMetadata]) -> list[str]:
    return list(dict.fromkeys(name for one in metadata for name in one.tensors))


def _primary_side(path: str, base: CheckpointMetadata | None, sides: list[CheckpointMetadata]) -> int:
    """The first side whose checkpoint type wins the three-way rule; both changing it is an error."""
    types = [side.checkpoint_type for side in sides]
    changed = {t for t in types if base is None or t != base.checkpoint_type}
    if len(set(types)) == 1 or not changed:
        return 0
    if len(changed) > 1:
        raise MergeError(
            f"{path}: the sides store it in different checkpoint formats ({', '.join(sorted(set(types)))}); "
            "convert them to one format first"
        )
    return types.index(changed.pop())


def _format_owner(base: CheckpointMetadata | None, sides: list[CheckpointMetadata], primary: int) -> int:
    """The side whose format data (e.g. safetensors' header and __metadata__) the result starts from."""
    same = [i for i, side in enumerate(sides) if side.checkpoint_type == sides[primary].checkpoint_type]
    if base is None or base.checkpoint_type != sides[primary].checkpoint_type:
        return primary
    changed = [i for i in same if sides[i].format != base.format]
    formats = {repr(sorted(sides[i].format.items())) for i in changed}
    return changed[0] if len(formats) == 1 else primary


def _choose(
    path: str, conflicts: list[Conflict], choose: Chooser
) -> tuple[list[tuple[Conflict, MergeStrategy]], list[tuple[str, str]]]:
    chosen, unresolved = [], []
    for conflict in conflicts:
        strategy = choose(path, conflict)
        reason = "no merge strategy was chosen" if strategy is None else strategy.unsuitable(conflict)
        if reason is None and strategy is not None:
            chosen.append((conflict, strategy))
        else:
            suffix = "" if strategy is None else f"{strategy.name} cannot merge it: "
            unresolved.append((conflict.name, suffix + str(reason)))
    return chosen, unresolved


def _weights(strategy: MergeStrategy, weights: list[float] | None, count: int) -> list[float]:
    chosen = weights or strategy.weights or [1.0] * count
    if len(chosen) != count:
        raise MergeError(f"{strategy.name}: {len(chosen)} weight(s) given for {count} models; give one per model")
    return chosen


def _assemble(
    checkpoint_type: str, owner: CheckpointMetadata, tensors: dict[str, TensorEntry], io: TensorIO
) -> CheckpointMetadata:
    """Metadata for the merged tensors, with format data that writes exactly them, in the order they are stored."""
    specs = [TensorSpec(name, entry.dtype, entry.shape) for name, entry in tensors.items()]
    old = [TensorSpec(name, entry.dtype, entry.shape) for name, entry in owner.tensors.items()]
    if specs == old:
        return CheckpointMetadata(checkpoint_type, tensors, owner.format)
    from git_theta.checkpoints.detect import load

    format_data, ordered = load(checkpoint_type).rebuild_format(io.load_format(owner.format), old, specs)
    return CheckpointMetadata(
        checkpoint_type, {spec.name: tensors[spec.name] for spec in ordered}, io.store_format(format_data)
    )
