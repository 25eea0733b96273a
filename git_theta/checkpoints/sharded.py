"""Sharded checkpoints: an index json (``model.safetensors.index.json``) naming the files that hold a model's tensors.

Hugging Face's ``save_pretrained(..., max_shard_size=...)`` writes ``{"metadata": ..., "weight_map": {tensor: file}}``
beside the shard files; the index is a plain file, each shard a checkpoint of its own. Commands that take a path
treat the index (or the directory holding it) as one model made of those shards.
"""

from __future__ import annotations

import json
import posixpath

from git_theta.errors import GitThetaError

INDEX_SUFFIX = ".index.json"


class ShardIndexError(GitThetaError):
    """An index json of a sharded checkpoint cannot be read."""


def is_index(path: str) -> bool:
    """Tell whether ``path`` is named like the index of a sharded checkpoint."""
    return path.endswith(INDEX_SUFFIX)


def shard_paths(index_path: str, data: bytes) -> list[str]:
    """The shard files an index names, as paths beside it (relative to the same root), in file name order."""
    try:
        weight_map = json.loads(data.decode("utf-8")).get("weight_map")
    except (ValueError, AttributeError) as exc:
        raise ShardIndexError(f"{index_path}: not a sharded checkpoint index ({str(exc):.120})") from exc
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
        raise ShardIndexError(f"{index_path}: not a sharded checkpoint index (no 'weight_map' of tensor -> file)")
    directory = posixpath.dirname(index_path)
    files = sorted(set(weight_map.values()))
    if any(f.startswith("/") or ".." in f.split("/") for f in files):
        raise ShardIndexError(f"{index_path}: its 'weight_map' names a file outside its directory")
    return [posixpath.normpath(posixpath.join(directory, f)) for f in files]


def shards_if_index(index_path: str, data: bytes) -> list[str] | None:
    """The shard files ``data`` names if it is a sharded checkpoint index, else None (any other ``*.index.json``)."""
    try:
        return shard_paths(index_path, data) if data else None
    except ShardIndexError:
        return None
