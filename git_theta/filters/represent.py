"""How a changed tensor is stored: whole, or as an exact update of its previous value, whichever is smallest.

Candidates are the tensor compressed on its own, the ``delta`` of its bit patterns from the previous value, and,
when few elements changed, a ``sparse`` list of them. Small tensors are encoded every way and the smallest kept;
large ones are judged on a sample of blocks.

Updates are taken against the *keyframe* of the previous value, the version of the tensor last stored whole, not
against the previous value itself: every version then rebuilds from two objects, however long the history, so
checking out version 100 costs what version 1 does. As the weights drift from the keyframe the update grows, until
storing the tensor whole is cheaper; that version becomes the next keyframe.
"""

from __future__ import annotations

from typing import Any

from git_theta.checkpoints.base import TensorSpec
from git_theta.dtypes import itemsize
from git_theta.filters.context import FilterContext
from git_theta.metadata import TensorEntry
from git_theta.pipeline import frame_executor
from git_theta.storage.codec import encode, encode_update, sampled_size
from git_theta.storage.errors import ObjectError
from git_theta.storage.tensors import encoded_size, read_tensor, store_dense, store_update

#: Tensors up to this size are encoded every way to pick the smallest; larger ones are judged on samples.
ENCODE_ALL = 4 << 20
#: A sparse update is tried when at most this fraction of the elements changed.
SPARSE_FRACTION = 1 / 16

Parts = list[tuple[str, str, tuple[int, ...], memoryview]]


def cheapest(
    context: FilterContext, spec: TensorSpec, data: memoryview, digest: str, previous: TensorEntry | None
) -> TensorEntry:
    """Store ``data`` in its cheapest exact form and return its entry (naming ``previous``, if the same kind)."""
    entry = _store_cheapest(context, spec, data, digest, previous)
    if previous is not None and (previous.dtype, previous.shape) == (spec.dtype, spec.shape):
        entry = entry._replace(previous=(previous.link, *previous.base))
    return entry


def _store_cheapest(
    context: FilterContext, spec: TensorSpec, data: memoryview, digest: str, previous: TensorEntry | None
) -> TensorEntry:
    base = _usable_base(context, spec, digest, previous)
    candidates = _update_candidates(context, spec, data, base) if base is not None else []
    group = itemsize(spec.dtype)
    if candidates:
        dense_size = _size(data, group, context.level, lambda sink: encode(data, digest, group, sink, context.level))
        sizes = [_update_size(parts, digest, header, context.level) for _, parts, header in candidates]
        best = min(range(len(candidates)), key=sizes.__getitem__)
        if sizes[best] < dense_size:
            name, parts, header = candidates[best]
            oid, stored = store_update(context.store, parts, digest, header, context.level, frame_executor())
            chain = (base.link, *base.base)
            return TensorEntry(spec.dtype, spec.shape, len(data), digest, oid, stored, name, chain)
    oid, stored = store_dense(context.store, data, digest, group, context.level, frame_executor())
    return TensorEntry(spec.dtype, spec.shape, len(data), digest, oid, stored)


def update_parts(payload: Any) -> Parts:
    """An update payload's arrays as the named parts of an object."""
    from git_theta.updates.base import dtype_name, raw_bytes

    return [(name, dtype_name(array), array.shape, raw_bytes(array)) for name, array in payload.parts.items()]


def update_header(name: str, base: TensorEntry, params: dict[str, Any]) -> dict[str, Any]:
    """The ``update`` field of an object's header."""
    return {"type": name, "base": base.hash, "params": params}


def _usable_base(
    context: FilterContext, spec: TensorSpec, digest: str, previous: TensorEntry | None
) -> TensorEntry | None:
    """The value to store a changed tensor against: the keyframe under its previous value (see the module doc)."""
    if previous is None or previous.hash == digest or not previous.nbytes or context.max_delta_depth < 1:
        return None
    if (previous.dtype, previous.shape) != (spec.dtype, spec.shape):
        return None
    keyframe = keyframe_of(previous)
    if not context.store.has(keyframe.oid):
        return None  # a lazy checkout: not worth a download
    return keyframe


def keyframe_of(entry: TensorEntry) -> TensorEntry:
    """The tensor stored whole at the bottom of ``entry``'s chain (``entry`` itself when it is stored whole)."""
    while entry.base:
        entry = entry.base_entry()
    return entry


def _update_candidates(
    context: FilterContext, spec: TensorSpec, data: memoryview, base: TensorEntry
) -> list[tuple[str, Parts, dict[str, Any]]]:
    from git_theta.updates.base import as_array
    from git_theta.updates.delta import DeltaUpdate
    from git_theta.updates.sparse import SparseUpdate

    try:
        old = read_tensor(context.store, base, f"{base.oid[:12]} (previous value of tensor {spec.name!r})")
    except ObjectError:
        return []  # a damaged previous value: store the tensor whole; fsck reports the damage
    old_array, new_array = as_array(old, spec.dtype, spec.shape), as_array(data, spec.dtype, spec.shape)
    delta = DeltaUpdate().infer(old_array, new_array)
    candidates = [("delta", update_parts(delta), update_header("delta", base, delta.params))]
    differences = delta.parts["delta"]
    if int(differences.size - (differences == 0).sum()) <= SPARSE_FRACTION * differences.size:
        sparse = SparseUpdate().infer(old_array, new_array)
        candidates.append(("sparse", update_parts(sparse), update_header("sparse", base, sparse.params)))
    return candidates


def _update_size(parts: Parts, digest: str, header: dict[str, Any], level: int) -> int:
    size = sum(len(data) for *_, data in parts)
    if size <= ENCODE_ALL or len(parts) != 1:
        return encoded_size(lambda sink: encode_update(parts, digest, header, sink, level))
    _, dtype, _, data = parts[0]
    return sampled_size(data, itemsize(dtype), level)


def _size(data: memoryview, group: int, level: int, write: Any) -> int:
    return encoded_size(write) if len(data) <= ENCODE_ALL else sampled_size(data, group, level)
