"""Tensors as numbers for a merge: the versions decoded from their objects, the result computed and stored."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from git_theta.checkpoints.base import Tensor, TensorSpec
from git_theta.dtypes import element_count
from git_theta.errors import GitThetaError
from git_theta.merges.base import Conflict, MergeStrategy
from git_theta.metadata import TensorEntry

if TYPE_CHECKING:
    from git_theta.filters.context import FilterContext

#: Elements per chunk of an elementwise strategy: float64 copies of a few MB, whatever the tensor's size.
CHUNK = 1 << 18
_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}
#: Types numpy lacks, from ml_dtypes.
_ML_DTYPES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu"}


class TensorIO(Protocol):
    """Where a merge reads the versions of a tensor and stores its result."""

    def require(self, entries: Iterable[TensorEntry]) -> None: ...

    def load(self, name: str, entry: TensorEntry) -> bytes | bytearray | memoryview: ...

    def store(self, spec: TensorSpec, data: memoryview) -> TensorEntry: ...


class StoreTensors:
    """The repository's object store, through the filters' context (missing objects are downloaded first)."""

    def __init__(self, context: FilterContext, path: str) -> None:
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
        from git_theta.storage.tensors import read_tensor, tensor_label

        return read_tensor(self.context.store, entry, tensor_label(self.path, name, entry))

    def store(self, spec: TensorSpec, data: memoryview) -> TensorEntry:
        from git_theta.filters.clean import store_tensor

        return store_tensor(self.context, Tensor(spec, data))[1]


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype of a floating-point git-theta dtype."""
    if dtype in _ML_DTYPES:
        import ml_dtypes

        if not hasattr(ml_dtypes, _ML_DTYPES[dtype]):
            raise GitThetaError(f"merging {dtype} tensors needs a newer ml_dtypes: pip install -U ml_dtypes")
        return np.dtype(getattr(ml_dtypes, _ML_DTYPES[dtype]))
    return np.dtype(_NUMPY[dtype])


def merge_tensor(strategy: MergeStrategy, conflict: Conflict, weights: list[float], tensors: TensorIO) -> TensorEntry:
    """Merge the versions of one tensor and store the result, cast back to the tensor's dtype."""
    first = conflict.sides[0]
    assert first is not None
    kind = numpy_dtype(first.dtype)
    load = tensors.load
    models = [np.frombuffer(load(conflict.name, entry), kind) for entry in conflict.sides if entry is not None]
    base = None
    if strategy.needs_base and conflict.base is not None:
        base = np.frombuffer(load(conflict.name, conflict.base), kind)
    out = np.empty(element_count(first.shape), kind)
    if strategy.elementwise:
        for start in range(0, out.size, CHUNK):
            part = slice(start, start + CHUNK)
            chunk_base = None if base is None else base[part].astype(np.float64)
            chunk_models = [model[part].astype(np.float64) for model in models]
            out[part] = strategy.merge(chunk_base, chunk_models, weights, conflict.name)
    else:
        # Whole-tensor formulas (a top-k, a norm) hold several copies: float32 halves them for 32-bit and smaller.
        work = np.float64 if first.dtype == "F64" else np.float32
        shaped = [model.astype(work, copy=False).reshape(first.shape) for model in models]
        shaped_base = None if base is None else base.astype(work, copy=False).reshape(first.shape)
        del models, base
        out[...] = strategy.merge(shaped_base, shaped, weights, conflict.name).reshape(-1)
    return tensors.store(TensorSpec(conflict.name, first.dtype, first.shape), memoryview(out.view(np.uint8)))
