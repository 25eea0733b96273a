"""Sharded checkpoints as one model: what a comparison reports on, and the one side its shards make together.

A tracked checkpoint is reported alone, unless an index json on either side names it as a shard: then the index
stands for the model, and its shards on each side are read as one side (tensors matched by name across shards, so
moving a tensor to another shard is no change). Naming one shard's file alone (without its index) compares that file.
"""

from __future__ import annotations

import itertools
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from git_theta.checkpoints.sharded import INDEX_SUFFIX, is_index, shard_paths
from git_theta.diffs.compare import Side
from git_theta.diffs.sides import metadata_of, side_of_bytes
from git_theta.diffs.store import ObjectReader
from git_theta.errors import UsageError
from git_theta.git.attributes import tracked_by_theta
from git_theta.metadata import TensorEntry, is_metadata

#: The shards an index names on one side (0 old, 1 new), or None when the index is not there.
Shards = Callable[[str, int], "list[str] | None"]


@dataclass(frozen=True)
class Unit:
    """One thing to compare: a checkpoint file (``path``), or a sharded model named by its index json."""

    path: str
    old: tuple[str, ...]
    new: tuple[str, ...]

    @property
    def sharded(self) -> bool:
        """Tell whether this is a model of shards."""
        return is_index(self.path)

    @property
    def files(self) -> list[str]:
        """Every file the unit is made of on either side (the index included)."""
        return list(dict.fromkeys((self.path, *self.old, *self.new)))


def group(listed: Iterable[str], shards: Shards, tracked: Callable[[list[str]], list[str]]) -> list[Unit]:
    """The units among ``listed`` paths: each index's tracked shards as one model, other tracked files alone."""
    paths = list(dict.fromkeys(listed))
    models: list[Unit] = []
    for index in filter(is_index, paths):
        old, new = shards(index, 0), shards(index, 1)
        members = list(dict.fromkeys((*(old or ()), *(new or ()))))
        if members and len(tracked(members)) == len(members):
            models.append(Unit(index, tuple(old or ()), tuple(new or ())))
    grouped = {shard for model in models for shard in (*model.old, *model.new)}
    singles = [Unit(path, (path,), (path,)) for path in tracked(paths) if path not in grouped]
    return sorted(models + singles, key=lambda unit: unit.path)


@dataclass(frozen=True)
class Version:
    """A checkpoint, or a sharded model, at one revision: the files holding its tensors and their contents."""

    path: str
    shards: tuple[str, ...]
    contents: tuple[bytes, ...]
    index: bytes = b""

    def side(self, reader: ObjectReader, cwd: str, fallback: str | None = None) -> Side:
        """This version as one side of a comparison."""
        parts = zip(self.shards, self.contents, strict=True)
        return combined([side_of_bytes(data, shard, reader, fallback, cwd) for shard, data in parts])

    def entries(self) -> dict[str, tuple[str, TensorEntry]]:
        """Each tensor's shard and metadata entry, in shard order (shards that hold no metadata have none)."""
        found: dict[str, tuple[str, TensorEntry]] = {}
        for shard, data in zip(self.shards, self.contents, strict=True):
            if is_metadata(data):
                found.update((name, (shard, e)) for name, e in metadata_of(data, shard).tensors.items())
        return found

    def tensors(self) -> dict[str, TensorEntry]:
        """Each tensor's metadata entry."""
        return {name: entry for name, (_, entry) in self.entries().items()}


def version_at(read: Callable[[str], bytes], path: str) -> Version:
    """The version of ``path`` (a checkpoint or an index json) that ``read`` (path -> content, b'' if absent) sees."""
    if not is_index(path):
        return Version(path, (path,), (read(path),))
    index = read(path)
    shards = tuple(shard_paths(path, index)) if index else ()
    return Version(path, shards, tuple(read(shard) for shard in shards), index)


def named_unit(path: str, listing: Iterable[str], cwd: str, where: str = "HEAD") -> str:
    """The checkpoint or sharded model ``path`` names in ``listing`` (the files under it): a checkpoint file, an index
    json, or a directory holding one index json (or else one tracked checkpoint)."""
    listed = list(listing)
    if is_index(path) or path in listed:
        return path
    inside = [p for p in listed if posixpath.dirname(p) == ("" if path == "." else path)]
    candidates = [p for p in inside if is_index(p)] or tracked_by_theta(inside, cwd)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UsageError(f"{path}: no tracked checkpoint or sharded checkpoint index (*{INDEX_SUFFIX}) at {where}")
    raise UsageError(f"{path} holds several checkpoints; name one of: {', '.join(candidates)}")


def combined(sides: list[Side]) -> Side:
    """The tensors of several shards as one side, in shard order."""
    if not sides:
        return Side.absent()
    if len(sides) == 1:
        return sides[0]
    kinds = [side.checkpoint_type for side in sides if side.checkpoint_type]
    items = itertools.chain.from_iterable(side.items for side in sides)
    return Side(items, kinds[0] if kinds else None, streamed=any(side.streamed for side in sides))


def changed_across(old: dict[str, TensorEntry], new: dict[str, TensorEntry]) -> list[TensorEntry]:
    """The entries a comparison will decode: same name and shape on both sides, different hash."""
    pairs = [(old[name], new[name]) for name in old.keys() & new.keys()]
    return [entry for a, b in pairs if a.hash != b.hash and a.shape == b.shape for entry in (a, b)]
