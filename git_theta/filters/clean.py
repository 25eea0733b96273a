"""The clean filter: a checkpoint in, its metadata out; each new tensor stored once as an object."""

from __future__ import annotations

import io
import os
from functools import partial
from typing import BinaryIO, cast

from git_theta import legacy
from git_theta.checkpoints.base import CheckpointError, Tensor, TensorSpec
from git_theta.checkpoints.buffers import POOL, keep_freed_memory
from git_theta.checkpoints.detect import detect
from git_theta.filters import meter
from git_theta.metadata import CheckpointMetadata, MetadataError, TensorEntry, is_metadata
from git_theta.pipeline import ordered_runs, tasks_for
from git_theta.representations.cheapest import store_tensor
from git_theta.representations.packing import SmallTensors
from git_theta.session.context import UPDATE_TYPE_ENV, Session
from git_theta.storage.format_data import store_format

HEAD_SIZE = 4096
#: Files from this size on have malloc keep freed memory for reuse (checkpoints/buffers.py).
LARGE_FILE = 16 << 20


def clean(stream: BinaryIO, path: str, context: Session) -> bytes:
    """Read a checkpoint from ``stream`` and return the metadata git should store for ``path``."""
    context.start_lookups()  # git check-attr and cat-file start while we read and look up the previous version
    head = _read_head(stream)
    if not head:
        return b""  # an empty file is kept as it is, like git-lfs does
    whole = cast(BinaryIO, _Prefixed(head, stream))  # a raw binary stream: typing.BinaryIO is a class, not a protocol
    if is_metadata(head):
        return _pass_through_metadata(whole.read(), path)
    if legacy.is_legacy_metadata(head):  # Git-Theta 0.2 metadata checked out without weights
        return legacy.pass_through(whole.read(), path)
    known = context.start_file(path)
    previous = known.own[-1] if known.own else None  # the staged version, else the committed one
    if previous is None:  # a checkout of a Git-Theta 0.2 file stays unmodified while its tensors are the same
        whole, kept = legacy.keep_unchanged(path, head, whole, context)
        if kept is not None:
            return kept
    explicit = context.explicit_checkpoint_type(path) or (previous.checkpoint_type if previous else None)
    plugin = detect(path, head, explicit)
    format_data, tensors = plugin().read(whole, path)
    small = SmallTensors()
    store, request = partial(_store_and_give_back, context, small), None
    if os.environ.get(UPDATE_TYPE_ENV):  # git theta add --update-type
        from git_theta.representations.requested_update import UpdateRequest, store_requested

        request = UpdateRequest.from_environment(path)
        assert request is not None  # the variable it reads is set
        store = partial(store_requested, context, request)
    entries: dict[str, TensorEntry] = {}
    size = _file_size(path)
    if size is not None and size >= LARGE_FILE:
        keep_freed_memory()
    with meter(f"git-theta: storing {path}", size) as progress:
        try:
            executor = tasks_for(size, context.executor)
            for spec, entry in ordered_runs(executor, store, tensors, context.window, size=_nbytes):
                if spec.name in entries:
                    raise CheckpointError(f"{path}: the checkpoint has two tensors named {spec.name!r}")
                entries[spec.name] = entry
                progress.advance(entry.nbytes)
        finally:
            POOL.clear()
    small.finish(context.store, entries)
    if request is not None:
        request.finish(path)
    format_data = store_format(format_data, context.store, context.encoder)  # large byte strings as objects
    return _keep_merge_record(CheckpointMetadata(plugin.name, entries, format_data), known.own).dumps()


def _store_and_give_back(context: Session, small: SmallTensors, tensor: Tensor) -> tuple[TensorSpec, TensorEntry]:
    """Store a tensor (a small new one is held in ``small`` for its pack), then hand its buffer back for the next
    tensor read (checkpoints/buffers.py)."""
    stored = store_tensor(context, tensor, small)
    POOL.give_back(tensor)
    return stored


def _nbytes(tensor: Tensor) -> int:
    return len(tensor.data)


def _keep_merge_record(metadata: CheckpointMetadata, own: list[CheckpointMetadata]) -> CheckpointMetadata:
    """Keep the record of the merge that made this exact checkpoint (staged or committed): a checkout of a merge
    result cleans back to the metadata the merge wrote. Any change to the checkpoint drops it."""
    for version in reversed(own):  # the staged version first
        if version.merge is not None and version.same_checkpoint(metadata):
            metadata.merge = version.merge
            break
    return metadata


def _file_size(path: str) -> int | None:
    """The size of the working tree file git is cleaning (git runs filters at the top of the working tree)."""
    try:
        return os.stat(path).st_size if path else None
    except OSError:
        return None


def _pass_through_metadata(data: bytes, path: str) -> bytes:
    # The file already is metadata (a checkout without weights): store it unchanged, but only if it is valid.
    try:
        CheckpointMetadata.loads(data)
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from exc
    return data


def _read_head(stream: BinaryIO) -> bytes:
    chunks, size = [], 0
    while size < HEAD_SIZE:
        chunk = stream.read(HEAD_SIZE - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _Prefixed(io.RawIOBase):
    """``head`` followed by the rest of ``stream``: lets us sniff the format without seeking."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io passes only these
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        return cast(io.BufferedIOBase, self._stream).readinto(buffer)  # every binary stream has it; IO omits it
