"""Tensors as numbers for a merge: the versions decoded from their objects, the result computed and stored."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from git_theta.checkpoints.base import Tensor, TensorSpec
from git_theta.dtypes import element_count, numpy_dtype
from git_theta.merges.base import (
    ALLOW_OVERFLOW,
    CHUNK,
    PLAIN,
    Conflict,
    MergeContext,
    MergeError,
    MergeStrategy,
    Step,
)
from git_theta.metadata import TensorEntry

if TYPE_CHECKING:
    from git_theta.session.context import Session


class TensorIO(Protocol):
    """Where a merge reads the versions of a tensor and stores its result."""

    def require(self, entries: Iterable[TensorEntry]) -> None: ...

    def load(self, name: str, entry: TensorEntry) -> bytes | bytearray | memoryview: ...

    def blocks(self, name: str, entry: TensorEntry) -> Iterator[memoryview]:
        """The tensor's bytes in pieces, checked against its hash once read to the end; a piece is valid until the
        next is read."""
        ...

    def store(self, spec: TensorSpec, data: memoryview) -> TensorEntry: ...

    def load_format(self, format_data: dict[str, Any]) -> dict[str, Any]:
        """Format data with its byte strings as ``bytes`` (see storage.format_data), for a plugin to rebuild."""
        ...

    def store_format(self, format_data: dict[str, Any]) -> dict[str, Any]:
        """Format data as metadata holds it: large byte strings stored as objects."""
        ...


class StoreTensors:
    """The repository's object store, through the filters' context (missing objects are downloaded first)."""

    def __init__(self, context: Session, path: str) -> None:
        self.context = context
        self.path = path

    def require(self, entries: Iterable[TensorEntry]) -> None:
        from git_theta.storage.errors import ObjectError
        from git_theta.storage.lfs_transfer import download_missing

        objects: dict[str, int] = {}
        for entry in entries:
            # An entry stored as an update also needs the objects of its bases.
            objects.update(entry.objects() if hasattr(entry, "objects") else {entry.oid: entry.stored})
        missing, reason = download_missing(self.context.store, objects, self.context.fetch)
        if missing:
            raise ObjectError(
                f"{self.path}: {len(missing)} tensor object(s) needed for the merge are not stored locally and could "
                f"not be downloaded (first: {sorted(missing)[0][:12]}; {reason}); fetch them (git theta pull), retry"
            )

    def load(self, name: str, entry: TensorEntry) -> memoryview:
        from git_theta.representations.read import read_tensor, tensor_label

        return read_tensor(self.context.store, entry, tensor_label(self.path, name, entry))

    def blocks(self, name: str, entry: TensorEntry) -> Iterator[memoryview]:
        from git_theta.pipeline import frame_executor
        from git_theta.representations.read import tensor_label
        from git_theta.representations.stream import stream_tensors

        labelled = [(tensor_label(self.path, name, entry), entry)]
        return next(stream_tensors(self.context.store, labelled, frame_executor()))

    def store(self, spec: TensorSpec, data: memoryview) -> TensorEntry:
        from git_theta.representations.cheapest import store_tensor

        return store_tensor(self.context, Tensor(spec, data))[1]

    def load_format(self, format_data: dict[str, Any]) -> dict[str, Any]:
        from git_theta.metadata import format_objects
        from git_theta.storage.format_data import load_format

        self.require(format_objects(format_data))
        return load_format(format_data, self.context.store, self.path)

    def store_format(self, format_data: dict[str, Any]) -> dict[str, Any]:
        from git_theta.storage.format_data import store_format

        return store_format(format_data, self.context.store, self.context.encoder)


def merge_tensor(
    strategy: MergeStrategy,
    conflict: Conflict,
    weights: list[float],
    tensors: TensorIO,
    path: str,
    context: MergeContext = PLAIN,
) -> TensorEntry:
    """Merge the versions of one tensor and store the result, cast back to the tensor's dtype.

    The versions are streamed from the store a chunk at a time, on every pass the strategy makes, so memory holds
    the result and a few chunks (TIES: one more tensor-sized array), not the versions. A result with inf or nan
    values that no version had (the dtype overflowed) is refused unless the strategy allows it.
    """
    first = conflict.sides[0]
    assert first is not None
    kind = numpy_dtype(first.dtype)
    # Elementwise formulas compute in float64 a chunk at a time; whole-tensor ones (a top-k, a norm) may hold
    # tensor-sized arrays: float32 halves them for 32-bit and narrower types.
    work = np.dtype(np.float64 if strategy.elementwise or first.dtype == "F64" else np.float32)
    versions = StreamedVersions(tensors, conflict, kind, work, context)
    with np.errstate(all="ignore"):  # an overflow is told once, below, naming the tensor
        step = strategy.prepare(versions, weights, conflict.name)
        if step is None:
            out, finite = _merge_whole(strategy, conflict, weights, tensors, kind, work)
        else:
            out, finite = _merge_streamed(step, versions, strategy.needs_base, kind)
    if finite and not strategy.allow_overflow:
        _refuse_overflow(out, strategy, conflict, path)
    return tensors.store(TensorSpec(conflict.name, first.dtype, first.shape), out.view(np.uint8).data)


def _refuse_overflow(out: np.ndarray, strategy: MergeStrategy, conflict: Conflict, path: str) -> None:
    bad = out.size - int(np.count_nonzero(np.isfinite(out)))
    if bad:
        dtype = conflict.sides[0].dtype if conflict.sides[0] else out.dtype
        lower = "lower lambda or the weights, " if "lambda" in strategy.options else ""
        raise MergeError(
            f"{path}: tensor {conflict.name!r} merged with {strategy.describe()} overflows {dtype} ({bad} of "
            f"{out.size} values inf or nan, where no version has any); {lower}choose another strategy (ours, theirs, "
            f"...), or add {ALLOW_OVERFLOW}=true to the strategy to keep them"
        )


def _all_finite(base: np.ndarray | None, models: Sequence[np.ndarray]) -> bool:
    return all(bool(np.isfinite(array).all()) for array in (*models, *([] if base is None else [base])))


class StreamedVersions:
    """The versions of a conflicting tensor, decoded from the store block by block on every pass."""

    def __init__(
        self, tensors: TensorIO, conflict: Conflict, kind: np.dtype, work: np.dtype, context: MergeContext
    ) -> None:
        self.tensors, self.conflict, self.kind, self.dtype, self.context = tensors, conflict, kind, work, context
        self.entries = [entry for entry in conflict.sides if entry is not None]
        self.size, self.models = element_count(self.entries[0].shape), len(self.entries)

    def chunks(self, models: Sequence[int], base: bool) -> Iterator[tuple[np.ndarray | None, list[np.ndarray]]]:
        entries = [self.entries[index] for index in models]
        if base:
            assert self.conflict.base is not None
            entries.insert(0, self.conflict.base)
        readers = [_Pieces(self.tensors.blocks(self.conflict.name, entry)) for entry in entries]
        for start in range(0, self.size, CHUNK):
            count = min(CHUNK, self.size - start) * self.kind.itemsize
            # astype copies: a piece of the store's stream is only valid until the next is read.
            arrays = [np.frombuffer(reader.read(count), self.kind).astype(self.dtype) for reader in readers]
            yield (arrays.pop(0) if base else None), arrays
        for reader in readers:
            reader.finish(self.conflict.name)


class _Pieces:
    """Exactly sized reads from a stream of pieces of any size."""

    def __init__(self, pieces: Iterator[memoryview]) -> None:
        self.pieces = pieces
        self.pending = memoryview(b"")

    def read(self, size: int) -> memoryview | bytes:
        if len(self.pending) >= size:
            data, self.pending = self.pending[:size], self.pending[size:]
            return data
        parts = [bytes(self.pending)]
        have = len(parts[0])
        while have < size:
            piece = memoryview(next(self.pieces, b"")).cast("B")
            if not piece:
                raise MergeError(f"a stored tensor ended after {have} of the {size} bytes expected; run git theta fsck")
            parts.append(bytes(piece[: size - have]))
            self.pending = piece[size - have :]
            have += len(parts[-1])
        return b"".join(parts)

    def finish(self, name: str) -> None:
        """Read the stream to its end, which checks the tensor's hash; it must hold no more bytes."""
        if len(self.pending) or any(len(piece) for piece in self.pieces):
            raise MergeError(f"tensor {name!r}: a stored version is longer than its metadata says; run git theta fsck")


def _merge_streamed(
    step: Step, versions: StreamedVersions, needs_base: bool, kind: np.dtype
) -> tuple[np.ndarray, bool]:
    """Return the merged tensor, and whether every version read was finite."""
    out = np.empty(versions.size, kind)
    start, finite = 0, True
    for base, models in versions.chunks(range(versions.models), needs_base and versions.conflict.base is not None):
        finite = finite and _all_finite(base, models)
        merged = step(base, models)
        out[start : start + merged.size] = merged
        start += merged.size
    return out, finite


def _merge_whole(
    strategy: MergeStrategy, conflict: Conflict, weights: list[float], tensors: TensorIO, kind: np.dtype, work: np.dtype
) -> tuple[np.ndarray, bool]:
    """A strategy without ``prepare`` (a plugin's, not elementwise): every version whole, in memory at once."""
    first = conflict.sides[0]
    assert first is not None
    models = [tensors.load(conflict.name, entry) for entry in conflict.sides if entry is not None]
    shaped = [np.frombuffer(model, kind).astype(work, copy=False).reshape(first.shape) for model in models]
    shaped_base = None
    if strategy.needs_base and conflict.base is not None:
        loaded = np.frombuffer(tensors.load(conflict.name, conflict.base), kind)
        shaped_base = loaded.astype(work, copy=False).reshape(first.shape)
    del models
    out = np.empty(element_count(first.shape), kind)
    out[...] = strategy.merge(shaped_base, shaped, weights, conflict.name).reshape(-1)
    return out, _all_finite(shaped_base, shaped)
