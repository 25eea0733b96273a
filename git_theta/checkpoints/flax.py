"""Flax msgpack state dicts (``flax.serialization.to_bytes``), read without jax, flax or msgpack; rebuilt exactly.

The file is one msgpack map. flax packs every array as a msgpack extension of type 1 whose payload is itself msgpack:
``[shape, dtype name, bin of the C-order bytes]`` (``_MsgpackExtType.ndarray`` in flax/serialization.py; type 2 is a
Python complex, type 3 a numpy scalar). Those arrays are the tensors, named by their keys joined with '/'. Every
other byte (keys, plain values, scalars, the arrays' own headers) is kept verbatim in the format data as the
*skeleton*, the runs of bytes between tensors: writing the runs and the tensors in turn gives back the same file,
whatever encoder wrote it, without re-encoding anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from git_theta.checkpoints.base import Checkpoint, CheckpointError, Tensor, TensorSpec, write_interleaved
from git_theta.checkpoints.msgpack_skeleton import (
    DTYPES,
    HeadSource,
    SkeletonSource,
    StreamSource,
    encode_array_header,
    walk,
)
from git_theta.dtypes import nbytes
from git_theta.metadata import MetadataError

NUMPY_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class FlaxCheckpoint(Checkpoint):
    """``flax.serialization.to_bytes`` / ``msgpack_serialize`` files; streamed tensor by tensor."""

    name = "flax"
    extensions = (".msgpack",)
    accepts_chunks = True

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        # A map that reaches a well-formed flax array within the first bytes.
        source = HeadSource(head)
        try:
            for _ in walk(source, "", 0, top=True):
                return True
        except CheckpointError:
            return source.found
        return False

    def read(self, stream: BinaryIO, label: str) -> tuple[dict[str, Any], Iterator[Tensor]]:
        skeleton: list[str] = []
        # The skeleton is complete once the tensors have been read, before the clean filter writes the metadata.
        return {"skeleton": skeleton}, _read(StreamSource(stream, label, skeleton))

    def write(
        self,
        format_data: dict[str, Any],
        specs: list[TensorSpec],
        tensors: Iterable[bytes | bytearray | memoryview],
        out: BinaryIO,
    ) -> None:
        runs = _runs(format_data)
        source = SkeletonSource(runs)
        try:
            expected = [spec for spec, _ in walk(source, "", 0, top=True)]
            source.finish()
        except CheckpointError as exc:
            raise MetadataError(f"the stored flax skeleton is invalid ({exc})") from exc
        if expected != [TensorSpec(s.name, s.dtype, tuple(s.shape)) for s in specs]:
            raise MetadataError("the stored flax skeleton does not match the metadata's tensor list")
        write_interleaved(out, runs, tensors)

    @classmethod
    def rebuild_format(
        cls, format_data: dict[str, Any], old_specs: list[TensorSpec], new_specs: list[TensorSpec]
    ) -> tuple[dict[str, Any], list[TensorSpec]]:
        """The skeleton for a merge whose tensors changed dtype or shape (the same names, in the same order)."""
        if [spec.name for spec in old_specs] != [spec.name for spec in new_specs]:
            return super().rebuild_format(format_data, old_specs, new_specs)  # adding or removing keys: refused
        runs = _runs(format_data)
        source = SkeletonSource(runs)
        for _ in walk(source, "", 0, top=True):
            pass
        for (run, offset, dtype_name), old, new in zip(source.arrays, old_specs, new_specs, strict=True):
            if (old.dtype, tuple(old.shape)) == (new.dtype, tuple(new.shape)):
                continue
            if DTYPES.get(dtype_name) != old.dtype or new.dtype not in NUMPY_NAMES:
                raise CheckpointError(
                    f"tensor {new.name!r} of numpy dtype {dtype_name!r} cannot change to {new.dtype} {new.shape} "
                    "in a merge; resolve it with the ours or theirs strategy"
                )
            header = encode_array_header(tuple(new.shape), NUMPY_NAMES[new.dtype], nbytes(new.dtype, new.shape))
            runs[run] = runs[run][:offset] + header
        return {**format_data, "skeleton": [run.decode("latin-1") for run in runs]}, list(new_specs)


def _runs(format_data: dict[str, Any]) -> list[bytes]:
    runs = format_data.get("skeleton")
    if not isinstance(runs, list) or not runs or not all(isinstance(run, str) for run in runs):
        raise MetadataError("the flax format data has no valid skeleton")
    try:
        return [run.encode("latin-1") for run in runs]
    except UnicodeEncodeError as exc:
        raise MetadataError("the stored flax skeleton is not a byte string") from exc


def _read(source: StreamSource) -> Iterator[Tensor]:
    for spec, data in walk(source, "", 0, top=True):
        yield Tensor(spec, data)
    source.finish()
