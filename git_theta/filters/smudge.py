"""The smudge filter: metadata in, the exact checkpoint out, rebuilt tensor by tensor from verified objects."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, BinaryIO, cast

from git_theta import legacy
from git_theta.checkpoints.base import TensorSpec
from git_theta.checkpoints.detect import load
from git_theta.filters import meter
from git_theta.metadata import CheckpointMetadata, MetadataError, TensorEntry, is_metadata
from git_theta.pipeline import frame_executor, ordered_map, tasks_for
from git_theta.representations.read import read_tensor, tensor_label
from git_theta.representations.stream import stream_tensors
from git_theta.session.context import Session
from git_theta.storage.errors import ObjectError
from git_theta.storage.format_data import load_format
from git_theta.storage.lfs_transfer import download_missing
from git_theta.storage.objects import ObjectStore

Writer = Callable[[BinaryIO], object]  # what it returns is not used


def smudge(data: bytes, path: str, context: Session) -> Writer:
    """Check that ``path`` can be rebuilt from ``data``; return a function that writes the checkpoint.

    Everything that can fail before the first byte is written (bad metadata, unknown format, missing objects) fails
    here, so a filter can still answer git with a clean error.
    """
    if not is_metadata(data):
        if legacy.is_legacy_metadata(data):  # written by Git-Theta 0.2
            return legacy.smudge_writer(data, path, context)
        return lambda out: out.write(data)  # not ours (committed before it was tracked): leave it as it is
    if context.display_only:
        # git diff, log and show hand the smudged file only to our diff driver and textconv, which read tensors from
        # the objects and tell of malformed metadata: failing here would stop git log -p at that commit.
        return lambda out: out.write(data)
    try:
        metadata = CheckpointMetadata.loads(data)
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from exc
    if context.skip_smudge:  # a lazy checkout keeps the metadata until the weights are pulled
        return lambda out: out.write(data)
    plugin = load(metadata.checkpoint_type)
    _require_objects(metadata, path, context)
    format_data = load_format(metadata.format, context.store, path)
    specs = [TensorSpec(name, entry.dtype, entry.shape) for name, entry in metadata.tensors.items()]
    items = [(path, name, entry) for name, entry in metadata.tensors.items()]

    def write(out: BinaryIO) -> None:
        tensors: Iterable[bytes | bytearray | memoryview]
        if plugin.accepts_chunks:  # then write takes each tensor as an iterable of chunks (see Checkpoint.write)
            labelled = [(tensor_label(path, name, entry), entry) for _, name, entry in items]
            executor = tasks_for(metadata.total_bytes, frame_executor())
            tensors = cast("Iterable[memoryview]", stream_tensors(context.store, labelled, executor))
        else:
            load_one = partial(load_tensor, context.store)
            executor = tasks_for(metadata.total_bytes, context.executor)
            tensors = ordered_map(executor, load_one, items, context.window, size=lambda item: item[2].nbytes)
        with meter(f"git-theta: checking out {path}", metadata.total_bytes) as progress:
            plugin().write(format_data, specs, _counted(tensors, progress), out)

    return write


def _counted(tensors: Iterable[Any], progress: Any) -> Iterator[Any]:
    """``tensors`` (each bytes, or an iterator over its blocks), counted by ``progress`` as the writer takes them."""
    for tensor in tensors:
        if isinstance(tensor, (bytes, bytearray, memoryview)):
            yield tensor
            progress.advance(len(tensor))
        else:
            yield _counted_blocks(tensor, progress)


def _counted_blocks(blocks: Iterator[memoryview], progress: Any) -> Iterator[memoryview]:
    for block in blocks:
        yield block
        progress.advance(len(block))


def load_tensor(store: ObjectStore, item: tuple[str, str, TensorEntry]) -> memoryview:
    """Return a tensor's exact bytes from its object, checked against what the metadata says."""
    path, name, entry = item
    return read_tensor(store, entry, tensor_label(path, name, entry), frame_executor())


def _require_objects(metadata: CheckpointMetadata, path: str, context: Session) -> None:
    """Download the objects that are not stored locally; fail before writing anything if some cannot be had."""
    missing, reason = download_missing(context.store, metadata.objects(), context.fetch)
    if missing:
        raise ObjectError(
            f"{path}: {len(missing)} tensor object(s) are not stored locally and could not be downloaded "
            f"(first: {sorted(missing)[0][:12]}; {reason}); make sure the remote has them, then check out again"
        )
