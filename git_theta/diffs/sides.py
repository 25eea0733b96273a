"""Turning what git hands us (metadata, a checkpoint file, a blob) into one side of a comparison."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from git_theta.checkpoints.base import Checkpoint, Tensor
from git_theta.checkpoints.detect import detect
from git_theta.diffs.compare import Side
from git_theta.diffs.store import ObjectReader
from git_theta.git.attributes import CHECKPOINT_ATTRIBUTE, check_attr
from git_theta.legacy.sniff import is_legacy_metadata
from git_theta.metadata import CheckpointMetadata, MetadataError, TensorEntry, is_metadata

HEAD_SIZE = 4096


def explicit_type(path: str, cwd: str | None = None, fallback: str | None = None) -> str | None:
    """The checkpoint type named by the ``theta-checkpoint`` attribute of ``path``, else ``fallback``."""
    value = check_attr(CHECKPOINT_ATTRIBUTE, [path], cwd).get(path, "unspecified")
    return fallback if value in ("unspecified", "unset", "set") else value


def metadata_of(data: bytes, path: str) -> CheckpointMetadata:
    """Parse metadata, naming ``path`` when it is invalid."""
    try:
        return CheckpointMetadata.loads(data)
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from exc


def changed_entries(path: str, old_data: bytes, new_data: bytes) -> list[TensorEntry]:
    """The entries a comparison of two metadata files will decode (same name and shape, different hash)."""
    if not (is_metadata(old_data) and is_metadata(new_data)):
        return []
    old, new = metadata_of(old_data, path).tensors, metadata_of(new_data, path).tensors
    pairs = [(old[name], new[name]) for name in old.keys() & new.keys()]
    return [entry for a, b in pairs if a.hash != b.hash and a.shape == b.shape for entry in (a, b)]


def side_of_bytes(
    data: bytes, path: str, reader: ObjectReader, fallback: str | None = None, cwd: str | None = None
) -> Side:
    """The side given by a file's content: metadata (tensors in objects) or a checkpoint (read and hashed).

    A checkpoint's format is found as the clean filter finds it: the ``theta-checkpoint`` attribute, ``fallback``
    (the other side's type), then the content.
    """
    if not data:
        return Side.absent()
    if is_metadata(data):
        return Side.stored(metadata_of(data, path), reader, path)
    if is_legacy_metadata(data):  # written by Git-Theta 0.2
        from git_theta.diffs.legacy_side import legacy_side

        return legacy_side(data, path, reader, explicit_type(path, cwd), cwd)
    plugin = detect(path, data[:HEAD_SIZE], explicit_type(path, cwd, fallback))
    format_data, tensors = plugin().read(io.BytesIO(data), path)
    return Side.read(tensors, plugin, plugin.encodings(format_data))


def side_of_file(
    file: Path, path: str, reader: ObjectReader, fallback: str | None = None, cwd: str | None = None
) -> Side:
    """The side given by a file on disk, read tensor by tensor (never whole, unless it is metadata)."""
    with open(file, "rb") as stream:
        head = stream.read(HEAD_SIZE)
    if not head or is_metadata(head) or is_legacy_metadata(head):
        return side_of_bytes(file.read_bytes(), path, reader, fallback, cwd)
    plugin = detect(path, head, explicit_type(path, cwd, fallback))
    encodings: dict[str, str] = {}
    return Side.read(_streamed(file, path, plugin, encodings), plugin, encodings)


def _streamed(file: Path, path: str, plugin: type[Checkpoint], encodings: dict[str, str]) -> Iterator[Tensor]:
    """Yield the tensors of ``file``, keeping it open only while they are read; fill in ``encodings`` first."""
    with open(file, "rb", buffering=1 << 20) as stream:
        format_data, tensors = plugin().read(stream, path)
        encodings.update(plugin.encodings(format_data))
        yield from tensors
