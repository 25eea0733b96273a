"""The clean filter: a checkpoint in, its metadata out; each new tensor stored once as an object."""

from __future__ import annotations

import hashlib
import io
from functools import partial
from typing import BinaryIO

from git_theta.checkpoints.base import CheckpointError, Tensor, TensorSpec
from git_theta.checkpoints.detect import detect
from git_theta.dtypes import itemsize
from git_theta.filters.context import FilterContext
from git_theta.metadata import CheckpointMetadata, MetadataError, TensorEntry, is_metadata
from git_theta.pipeline import frame_executor, ordered_map
from git_theta.storage.codec import MemorySink, encode

HEAD_SIZE = 4096
SMALL_OBJECT = 1 << 20


def clean(stream: BinaryIO, path: str, context: FilterContext) -> bytes:
    """Read a checkpoint from ``stream`` and return the metadata git should store for ``path``."""
    head = _read_head(stream)
    if not head:
        return b""  # an empty file is kept as it is, like git-lfs does
    whole = _Prefixed(head, stream)
    if is_metadata(head):
        return _pass_through_metadata(whole.read(), path)
    previous = context.previous_metadata(path)
    if previous is not None:
        context.remember(previous)
    explicit = context.explicit_checkpoint_type(path) or (previous.checkpoint_type if previous else None)
    plugin = detect(path, head, explicit)
    format_data, tensors = plugin().read(whole, path)
    entries: dict[str, TensorEntry] = {}
    stored = ordered_map(
        context.executor, partial(store_tensor, context), tensors, context.window, size=lambda t: len(t.data)
    )
    for spec, entry in stored:
        if spec.name in entries:
            raise CheckpointError(f"{path}: the checkpoint has two tensors named {spec.name!r}")
        entries[spec.name] = entry
    return CheckpointMetadata(plugin.name, entries, format_data).dumps()


def store_tensor(context: FilterContext, tensor: Tensor) -> tuple[TensorSpec, TensorEntry]:
    """Hash a tensor's exact bytes and store them as an object unless an identical tensor is already stored."""
    spec = tensor.spec
    data = memoryview(tensor.data).cast("B")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    known = context.known.get(digest)
    if known is None:
        known = _store_object(context, data, digest, itemsize(spec.dtype))
        context.known[digest] = known
    oid, stored = known
    return spec, TensorEntry(spec.dtype, spec.shape, len(data), digest, oid, stored)


def _store_object(context: FilterContext, data: memoryview, digest: str, group: int) -> tuple[str, int]:
    if len(data) <= SMALL_OBJECT:  # encoded in memory and written once: cheap for thousands of tiny tensors
        sink = MemorySink()
        encode(data, digest, group, sink, context.level)
        return context.store.put(sink.getvalue())
    writer = context.store.writer()
    try:
        encode(data, digest, group, writer, context.level, frame_executor())
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


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

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        return self._stream.readinto(buffer)
