"""How a changed tensor is stored: whole, or as an exact update of its previous value, whichever is smallest.

Candidates are the tensor compressed on its own, the ``delta`` of its bit patterns from the previous value, and,
when few elements changed, a ``sparse`` list of them. Small tensors are encoded every way and the smallest kept;
large ones are judged on a sample of blocks. An update far smaller than the keyframe's object wins without the
tensor being encoded whole as well (see ``_clearly_smaller``).

Updates are taken against the *keyframe* of the previous value, the version of the tensor last stored whole, not
against the previous value itself: every version then rebuilds from two objects, however long the history, so
checking out version 100 costs what version 1 does. As the weights drift from the keyframe the update grows, until
storing the tensor whole is cheaper; that version becomes the next keyframe.

A large tensor in which many elements changed (a fine-tune) never has its delta held whole: each block of it is
computed from the keyframe's block when it is compressed, on every core.
"""

from __future__ import annotations

import hashlib
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from git_theta.checkpoints.base import Tensor, TensorSpec
from git_theta.dtypes import bits_dtype, dtype_name, itemsize, read_as
from git_theta.metadata import TensorEntry
from git_theta.pipeline import Pending, hash_executor
from git_theta.representations.packing import PACK_BELOW, SmallTensors
from git_theta.session.context import Session
from git_theta.storage.codec import BLOCK, ObjectReader, sample_starts
from git_theta.storage.encoder import Encoder, Parts, in_memory
from git_theta.storage.errors import ObjectError
from git_theta.storage.packs import open_reader
from git_theta.storage.verify import check_object_id

if TYPE_CHECKING:
    import numpy as np

#: Tensors up to this size are encoded every way to pick the smallest; larger ones are judged on samples.
ENCODE_ALL = 4 << 20
#: A sparse update is tried when at most this fraction of the elements changed.
SPARSE_FRACTION = 1 / 16
#: An update at most this fraction of its keyframe's stored size is kept without encoding the tensor whole.
CLEARLY_SMALLER = 7 / 8


def cheapest(
    context: Session,
    spec: TensorSpec,
    data: memoryview,
    digest: str,
    previous: TensorEntry | None,
    related: TensorEntry | None = None,
) -> TensorEntry:
    """Store ``data`` in its cheapest exact form and return its entry (naming ``previous``, if the same kind).

    Updates are taken against the keyframe of ``previous``, or else of ``related`` (a same-named tensor of another
    file).
    """
    entry = _store_cheapest(context, spec, data, digest, previous or related)
    if previous is not None and (previous.dtype, previous.shape) == (spec.dtype, spec.shape):
        entry = entry._replace(previous=(previous.link, *previous.base))
    return entry


def _store_cheapest(
    context: Session, spec: TensorSpec, data: memoryview, digest: str, previous: TensorEntry | None
) -> TensorEntry:
    base = _usable_base(context, spec, digest, previous)
    if base is not None and len(data) > ENCODE_ALL:
        streamed = _store_large(context, spec, data, digest, base)
        if streamed is not None:
            return streamed
    candidates = _update_candidates(context, spec, data, base) if base is not None else []
    group = itemsize(spec.dtype)
    encoder = context.encoder
    if candidates:
        assert base is not None  # there are candidates only with a base
        trials = [_update_trial(encoder, parts, digest, header) for _, parts, header in candidates]
        best = min(range(len(candidates)), key=lambda index: trials[index].size)
        dense = None
        if not _clearly_smaller(trials[best].size, base, data, group):
            write_dense = partial(encoder.write_dense, data=data, digest=digest, group=group)
            dense = _trial(encoder, len(data), group, write_dense, data, dense=True)
        if dense is None or trials[best].size < dense.size:
            name, parts, header = candidates[best]
            if (encoded := trials[best].encoded) is not None:
                oid, stored = context.store.put(encoded)
            else:
                oid, stored = encoder.store_update(context.store, parts, digest, header)
            return TensorEntry(spec.dtype, spec.shape, len(data), digest, oid, stored, name, (base.link, *base.base))
        if dense.encoded is not None:
            oid, stored = context.store.put(dense.encoded)
            return TensorEntry(spec.dtype, spec.shape, len(data), digest, oid, stored)
    oid, stored = encoder.store_dense(context.store, data, digest, group)
    return TensorEntry(spec.dtype, spec.shape, len(data), digest, oid, stored)


def _store_large(
    context: Session, spec: TensorSpec, data: memoryview, digest: str, keyframe: TensorEntry
) -> TensorEntry | None:
    """Store a large tensor whole or as a delta streamed from its keyframe, judged on a sample of blocks.

    None when the sample says few elements changed (a sparse update may be smallest: that is judged on the whole
    difference), or when the keyframe cannot be streamed from (not in blocks of ``BLOCK``, damaged): the general
    path decides then.
    """
    import numpy as np

    delta = _StreamedDelta.open(context, spec, data, keyframe)
    if delta is None:
        return None
    try:
        starts = sample_starts(len(data))
        changed = sum(int(np.count_nonzero(delta.bits_at(at, keep=True))) for at in starts)
        sampled = sum(min(BLOCK, len(data) - at) for at in starts) // delta.itemsize
        if changed <= 2 * SPARSE_FRACTION * sampled:
            return None
        group, encoder = itemsize(spec.dtype), context.encoder
        if encoder.estimated_size(delta, delta.itemsize) >= encoder.estimated_size(data, group, dense=True):
            oid, stored = encoder.store_dense(context.store, data, digest, group)
            return TensorEntry(spec.dtype, spec.shape, len(data), digest, oid, stored)
        parts: Parts = [("delta", delta.dtype_name, (len(data) // delta.itemsize,), delta)]
        header = update_header("delta", keyframe, {})
        oid, stored = encoder.store_update(context.store, parts, digest, header)
        delta.check_keyframe()
        return TensorEntry(spec.dtype, spec.shape, len(data), digest, oid, stored, "delta", (keyframe.link,))
    except ObjectError:
        return None  # a damaged keyframe: the general path stores the tensor whole; fsck reports the damage
    finally:
        delta.close()


def store_tensor(context: Session, tensor: Tensor, small: SmallTensors | None = None) -> tuple[TensorSpec, TensorEntry]:
    """Hash a tensor's exact bytes and store them, unless the repository already stores them (session/known.py).

    A changed tensor is stored in the cheapest exact form: whole, or as an update of its previous value. With
    ``small``, a new small tensor is held there, to be stored in a pack when the file ends (representations/packing.py).
    """
    spec = tensor.spec
    data = memoryview(tensor.data).cast("B")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    known = context.file
    entry = known.unchanged(spec, digest) or known.stored(spec, digest)
    if entry is None:
        previous = known.previous.get(spec.name)
        if small is not None and (entry := small.hold(context.encoder, spec, data, digest, previous)) is not None:
            return spec, entry
        related = known.related(spec.name) if previous is None else None
        entry = cheapest(context, spec, data, digest, previous, related)
    return spec, entry


class _StreamedDelta:
    """The ``delta`` of a tensor from its keyframe, a block at a time, on demand and from any thread.

    Its ``BLOCK``-aligned slices are the bytes of the delta there (the zigzag difference of the bit patterns),
    computed from the same block of the keyframe. The blocks are read out of order, so the keyframe is checked
    against its object id instead, on a thread of its own. The sampled blocks are kept, so that judging the tensor
    and storing it compute each of them once.
    """

    def __init__(self, new_bits: Any, reader: ObjectReader, checked: Pending[None]) -> None:
        self.new_bits, self.reader, self.checked = new_bits, reader, checked
        self.itemsize = new_bits.itemsize
        self.dtype_name = dtype_name(new_bits.dtype)
        self.blocks = {block[2]: block for block in reader.blocks}
        self.kept: dict[int, Any] = {}

    @classmethod
    def open(cls, context: Session, spec: TensorSpec, data: memoryview, keyframe: TensorEntry) -> _StreamedDelta | None:
        """The delta of ``data`` from ``keyframe``; None unless the keyframe's frames are its ``BLOCK``s."""
        import numpy as np

        label = f"{keyframe.oid[:12]} (keyframe of tensor {spec.name!r})"
        try:
            store = context.store
            reader = open_reader(store, keyframe, label)
        except ObjectError:
            return None
        starts = [block[2] for block in reader.blocks]
        if reader.size != len(data) or starts != list(range(0, len(data), BLOCK)):
            reader.close()
            return None
        checked = hash_executor().submit(check_object_id, store, keyframe.oid, label)
        return cls(np.frombuffer(data, dtype=bits_dtype(spec.dtype)), reader, checked)

    def __len__(self) -> int:
        return len(self.new_bits) * self.itemsize

    def __getitem__(self, window: slice) -> memoryview:
        return memoryview(self.bits_at(window.start).view("u1"))

    def bits_at(self, start: int, keep: bool = False) -> Any:
        """The delta of the block that starts at byte ``start``, as unsigned integers (kept, with ``keep``)."""
        import numpy as np

        from git_theta.updates.delta import zigzag_difference

        if start in self.kept:
            return self.kept[start]
        old = np.frombuffer(self.reader.read_block(self.blocks[start]), dtype=self.new_bits.dtype)
        at = start // self.itemsize
        out = np.empty_like(old)
        zigzag_difference(self.new_bits[at : at + len(old)], old, out)
        if keep:
            self.kept[start] = out
        return out

    def check_keyframe(self) -> None:
        """Raise ObjectError unless the keyframe the delta was taken from is intact."""
        self.checked.result()

    def close(self) -> None:
        self.checked.cancel()
        self.reader.close()


class _Trial(NamedTuple):
    """A candidate's stored size, and the whole encoded object when it was small enough to encode in full."""

    size: int
    encoded: bytes | None


def _trial(encoder: Encoder, size: int, group: int, write: Any, sample: memoryview, dense: bool = False) -> _Trial:
    """Encode a candidate of ``size`` bytes in memory when small; else estimate its size from blocks of ``sample``
    (``dense`` when it is the tensor itself, stored with its sign bits moved)."""
    if size <= ENCODE_ALL:
        encoded = in_memory(write)
        return _Trial(len(encoded), encoded)
    return _Trial(encoder.estimated_size(sample, group, dense=dense), None)


def _update_trial(encoder: Encoder, parts: Parts, digest: str, header: dict[str, Any]) -> _Trial:
    write = partial(encoder.write_update, parts=parts, digest=digest, update=header)
    if len(parts) != 1:  # sparse: at most 1/16 of the elements, encoded in full
        return _trial(encoder, 0, 1, write, parts[0][3])
    _, dtype, _, data = parts[0]
    return _trial(encoder, len(data), itemsize(dtype), write, data)


def update_parts(payload: Any) -> Parts:
    """An update payload's arrays as the named parts of an object."""
    from git_theta.updates.base import raw_bytes

    return [(name, dtype_name(array.dtype), array.shape, raw_bytes(array)) for name, array in payload.parts.items()]


def update_header(name: str, base: TensorEntry, params: dict[str, Any]) -> dict[str, Any]:
    """The ``update`` field of an object's header."""
    return {"type": name, "base": base.hash, "params": params}


def _usable_base(context: Session, spec: TensorSpec, digest: str, previous: TensorEntry | None) -> TensorEntry | None:
    """The value to store a changed tensor against: the keyframe under its previous value (see the module doc)."""
    if previous is None or previous.hash == digest or previous.nbytes < PACK_BELOW or context.max_delta_depth < 1:
        return None  # small tensors are stored whole (representations/packing.py)
    if (previous.dtype, previous.shape) != (spec.dtype, spec.shape):
        return None
    keyframe = keyframe_of(previous)
    if not context.store.has(keyframe.oid):
        return None  # a lazy checkout: not worth a download
    return keyframe


def _clearly_smaller(size: int, keyframe: TensorEntry, data: memoryview, group: int) -> bool:
    """Whether an update of ``size`` bytes is so much smaller than the keyframe's own object that storing the tensor
    (``data``, elements of ``group`` bytes, at most ``ENCODE_ALL``) whole would not win: encoding it whole only to
    find that out (every tensor of a fine-tune) is then skipped.

    An update that small means most values are close to the keyframe's, so whole they would take about what the
    keyframe does; unless many became zero (a pruned tensor, which whole may take less than its update): then both
    are encoded. The keyframe's size is recorded in the metadata, so the choice depends on the file and its
    history alone.
    """
    if len(data) > ENCODE_ALL or keyframe.packed is not None or group not in (1, 2, 4, 8):
        return False  # a large tensor's candidates are estimates: they are weighed against the dense estimate
    if size > CLEARLY_SMALLER * keyframe.stored:
        return False
    import numpy as np

    elements = np.frombuffer(data, dtype=f"u{group}")
    return bool(elements.size - np.count_nonzero(elements) <= SPARSE_FRACTION * elements.size)


def keyframe_of(entry: TensorEntry) -> TensorEntry:
    """The tensor stored whole at the bottom of ``entry``'s chain (``entry`` itself when it is stored whole)."""
    while entry.base:
        entry = entry.base_entry()
    return entry


def _update_candidates(
    context: Session, spec: TensorSpec, data: memoryview, base: TensorEntry
) -> list[tuple[str, Parts, dict[str, Any]]]:
    import numpy as np

    from git_theta.updates.base import Payload, raw_bytes

    try:
        differences = _delta_from_keyframe(context, spec, data, base)
    except ObjectError:
        return []  # a damaged keyframe: store the tensor whole; fsck reports the damage
    delta = Payload({"delta": differences}, {})
    candidates = [("delta", update_parts(delta), update_header("delta", base, {}))]
    whole_elements = itemsize(spec.dtype) == differences.itemsize  # not complex: their deltas are per component
    if whole_elements and np.count_nonzero(differences) <= SPARSE_FRACTION * differences.size:
        changed = np.flatnonzero(differences)  # a zero difference is an unchanged bit pattern
        values = np.frombuffer(data, dtype=differences.dtype)[changed]  # bit patterns: no ml_dtypes for bf16
        parts = update_parts(Payload({"indices": changed}, {}))
        parts.append(("values", read_as(spec.dtype), values.shape, raw_bytes(values)))
        candidates.append(("sparse", parts, update_header("sparse", base, {"mode": "set"})))
    return candidates


def _delta_from_keyframe(context: Session, spec: TensorSpec, data: memoryview, keyframe: TensorEntry) -> np.ndarray:
    """The ``delta`` of ``data`` from the keyframe, which is decoded block by block: never held whole."""
    import hashlib

    import numpy as np

    from git_theta.updates.delta import zigzag_difference

    bits = bits_dtype(spec.dtype)
    new_bits = np.frombuffer(data, dtype=bits)
    differences = np.empty_like(new_bits)
    label = f"{keyframe.oid[:12]} (keyframe of tensor {spec.name!r})"
    reader = open_reader(context.store, keyframe, label)
    digest = hashlib.sha256()
    try:
        for block in reader.blocks:
            old = reader.read_block(block)
            digest.update(old)
            at, count = block[2] // bits.itemsize, len(old) // bits.itemsize
            zigzag_difference(new_bits[at : at + count], np.frombuffer(old, dtype=bits), differences[at : at + count])
        reader.check_hash(digest)
    finally:
        reader.close()
    return differences
