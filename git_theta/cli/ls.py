"""``git theta ls [REV] [PATH]``: tracked checkpoints and their tensors."""

from __future__ import annotations

import json
import os
import posixpath
import shlex
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import click

from git_theta.checkpoints.sharded import shards_if_index
from git_theta.diffs.models import Version, group, version_at
from git_theta.diffs.status import METADATA, worktree_state
from git_theta.dtypes import element_count, itemsize
from git_theta.errors import UsageError
from git_theta.git.attributes import tracked_by_theta
from git_theta.git.catfile import BlobReader
from git_theta.git.repo import lfs_storage, resolve_tree
from git_theta.git.runner import run, split_z
from git_theta.legacy.metadata import LegacyEntry
from git_theta.legacy.sniff import is_legacy_metadata
from git_theta.metadata import DENSE, CheckpointMetadata, TensorEntry, format_objects, is_metadata
from git_theta.storage.objects import LfsObjectStore

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Said of every checkpoint still stored as the original Git-Theta 0.2 stored it.
LEGACY_NOTE = "Git-Theta 0.2 format; run git theta migrate"
Legacy = dict[tuple[str, ...], LegacyEntry]


@click.command()
@click.argument("args", nargs=-1, metavar="[REV] [PATH]...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--tensors/--no-tensors", default=True, help="List each tensor (default) or only the files.")
def ls(args: tuple[str, ...], as_json: bool, tensors: bool) -> None:
    """List the checkpoints tracked at REV (default: the index) and their tensors, a sharded model as one."""
    rev, paths = _split_args(list(args))
    found = list(_checkpoints(rev, paths))
    store = LfsObjectStore(lfs_storage())
    if as_json:
        click.echo(json.dumps({path: _as_json(meta, _here(path, meta, rev, store)) for path, meta in found}, indent=2))
        return
    if not found:
        click.echo(f"git-theta: no tracked checkpoints at {rev or 'the index'}", err=True)
    for path, metadata in found:
        if isinstance(metadata, (CheckpointMetadata, Model)):
            _print_checkpoint(path, metadata, tensors, _note(path, *_here(path, metadata, rev, store)))
        else:
            _print_legacy(path, metadata, tensors)


def _split_args(args: list[str]) -> tuple[str | None, list[str]]:
    if args and resolve_tree(args[0]) is not None:
        return args[0], args[1:]
    return None, args


class Here(NamedTuple):
    """What of a checkpoint is missing here: its weights in the working tree, objects in the local store."""

    lazy: bool
    absent: int


class Model(NamedTuple):
    """A sharded checkpoint listed as one: its shards, and each tensor's shard and entry."""

    checkpoint_type: str
    shards: tuple[str, ...]
    entries: dict[str, tuple[str, TensorEntry]]


def _checkpoints(rev: str | None, paths: list[str]) -> Iterator[tuple[str, CheckpointMetadata | Legacy | Model]]:
    if rev is None:
        listing = run("ls-files", "-z", "--cached", "--", *paths).stdout
    else:
        listing = run("ls-tree", "-r", "-z", "--name-only", rev, "--", *paths).stdout
    with BlobReader() as blobs:
        read = partial(_read, blobs, rev)
        units = group(split_z(listing), lambda index, _: shards_if_index(index, read(index)), tracked_by_theta)
        if paths and not units:
            _explain_no_match(rev, paths)
        for unit in units:
            if unit.sharded:
                yield unit.path, _model(version_at(read, unit.path))
                continue
            path = unit.path
            data = blobs.read(f"{rev or ''}:{path}")
            if data is not None and is_metadata(data):
                yield path, CheckpointMetadata.loads(data)
            elif data is not None and is_legacy_metadata(data):
                from git_theta.legacy.metadata import parse

                yield path, parse(data, path)


def _explain_no_match(rev: str | None, paths: list[str]) -> None:
    """Say why nothing matched: a name that is neither a revision nor a path, or no checkpoint there."""
    for path in paths:
        if rev is None and not os.path.lexists(path) and not any(c in path for c in "*?[:"):
            raise UsageError(
                f"{path!r} is neither a revision nor a path in the working tree; name a branch, tag or commit, "
                "or a tracked checkpoint"
            )
    raise UsageError(f"no tracked checkpoint matches {' '.join(paths)} at {rev or 'the index'}")


def _here(path: str, metadata: CheckpointMetadata | Model | Legacy, rev: str | None, store: LfsObjectStore) -> Here:
    """Whether the working tree holds only metadata (listing the index), and how many objects are not here."""
    if isinstance(metadata, Model):
        files = list(metadata.shards)
        objects = {oid for _, entry in metadata.entries.values() for oid in entry.objects()}
    elif isinstance(metadata, CheckpointMetadata):
        files, objects = [path], set(metadata.objects())
    else:
        return Here(False, 0)
    lazy = rev is None and any(worktree_state(Path(file)) == METADATA for file in files)
    return Here(lazy, sum(1 for oid in objects if not store.has(oid)))


def _note(path: str, lazy: bool, absent: int) -> str:
    """What ``git theta ls`` says after a checkpoint's sizes when its weights are not all here."""
    if lazy:
        return f"  metadata only (git theta pull {shlex.quote(path)})"
    return f"  {absent} object(s) not downloaded" if absent else ""


def _model(version: Version) -> Model:
    kinds = [CheckpointMetadata.loads(data).checkpoint_type for data in version.contents if is_metadata(data)]
    return Model(kinds[0] if kinds else "?", version.shards, version.entries())


def _read(blobs: BlobReader, rev: str | None, path: str) -> bytes:
    return blobs.read(f"{rev or ''}:{path}") or b""


def _as_json(metadata: CheckpointMetadata | Model | Legacy, here: Here) -> dict:
    if isinstance(metadata, Model):
        return {
            "checkpoint_type": metadata.checkpoint_type,
            "shards": list(metadata.shards),
            "metadata_only": here.lazy,
            "objects_not_downloaded": here.absent,
            "tensors": {name: {**e.to_json(), "shard": shard} for name, (shard, e) in metadata.entries.items()},
        }
    if not isinstance(metadata, CheckpointMetadata):
        return {
            "format": "git-theta 0.2",
            "note": LEGACY_NOTE,
            "tensors": {e.name: _legacy_json(e) for e in metadata.values()},
        }
    return {
        "checkpoint_type": metadata.checkpoint_type,
        "metadata_only": here.lazy,
        "objects_not_downloaded": here.absent,
        "tensors": {name: entry.to_json() for name, entry in metadata.tensors.items()},
    }


def _print_checkpoint(path: str, metadata: CheckpointMetadata | Model, tensors: bool, note: str) -> None:
    if isinstance(metadata, Model):
        entries = {name: entry for name, (_, entry) in metadata.entries.items()}
        shard_of = {name: f"  {posixpath.basename(shard)}" for name, (shard, _) in metadata.entries.items()}
        kind, extra = metadata.checkpoint_type, f"{len(metadata.shards)} shards, "
    else:
        entries, shard_of, kind, extra = metadata.tensors, {}, metadata.checkpoint_type, ""
    objects = {entry.oid: entry.stored for entry in entries.values()}  # shared objects count once
    if isinstance(metadata, CheckpointMetadata):
        objects.update((entry.oid, entry.stored) for entry in format_objects(metadata.format))  # a GGUF header's
    click.echo(
        f"{path}  ({kind}, {extra}{len(entries)} tensors, {_size(sum(e.nbytes for e in entries.values()))}, "
        f"stored {_size(sum(objects.values()))} in {len(objects)} objects){note}"
    )
    if not tensors or not entries:
        return
    width = max(len(name) for name in entries)
    shard = "  shard" if shard_of else ""
    click.echo(f"  {'tensor':<{width}}  {'dtype':<8} {'shape':<18} {'bytes':>12} {'stored':>12}  update{shard}")
    for name, entry in entries.items():
        shape = "x".join(str(d) for d in entry.shape) or "scalar"
        update = entry.update if entry.update == DENSE else f"{entry.update} (depth {len(entry.base)})"
        stored = entry.stored if entry.packed is None else entry.packed[1]  # its own piece of a pack
        line = f"  {name:<{width}}  {entry.dtype:<8} {shape:<18} {entry.nbytes:>12} {stored:>12}  {update}"
        click.echo(line + shard_of.get(name, ""))


def _legacy_json(entry: LegacyEntry) -> dict:
    return {
        "dtype": entry.dtype,
        "shape": list(entry.shape),
        "update": entry.update_type,
        "last_commit": entry.last_commit,
        "oid": entry.oid,
        "stored": entry.size,
    }


def _print_legacy(path: str, entries: Legacy, tensors: bool) -> None:
    """Names, dtypes and shapes from the old metadata (an update's dtype is the one the metadata records)."""
    nbytes = sum(element_count(e.shape) * itemsize(e.dtype) for e in entries.values())
    stored = {e.oid: e.size for e in entries.values()}
    click.echo(
        f"{path}  ({LEGACY_NOTE}; {len(entries)} tensors, {_size(nbytes)}, "
        f"stored {_size(sum(stored.values()))} in {len(stored)} objects)"
    )
    if not tensors or not entries:
        return
    width = max(len("tensor"), *(len(e.name) for e in entries.values()))
    click.echo(f"  {'tensor':<{width}}  {'dtype':<8} {'shape':<18} {'bytes':>12} {'stored':>12}  update")
    for e in entries.values():
        shape = "x".join(str(d) for d in e.shape) or "scalar"
        update = e.update_type if e.update_type == "dense" else f"{e.update_type} (of {(e.last_commit or '?')[:12]})"
        size = element_count(e.shape) * itemsize(e.dtype)
        click.echo(f"  {e.name:<{width}}  {e.dtype:<8} {shape:<18} {size:>12} {e.size:>12}  {update}")


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{count} B"
        count /= 1024
    return f"{count} B"
