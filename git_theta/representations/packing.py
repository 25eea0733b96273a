"""New small tensors of one file, stored together in packs (storage/packs.py) once the whole file has been read.

A checkpoint of thousands of tiny tensors would otherwise cost one object file each. Only tensors that are new or
changed are packed: a tensor the repository already stores keeps its entry (session/known.py), so unchanged small
tensors keep pointing at the pack they were stored in, and one changed tiny tensor stores one small new pack instead
of re-storing the others. Small tensors are always stored whole, never as an update: packing saves more than a
delta of a few kilobytes would.

The pack holds the pieces in the checkpoint's tensor order (equal pieces once), so the same content and history
give the same pack and the same metadata.
"""

from __future__ import annotations

import threading
from functools import partial

from git_theta.checkpoints.base import TensorSpec
from git_theta.dtypes import itemsize
from git_theta.metadata import TensorEntry
from git_theta.session.known import with_previous
from git_theta.storage.encoder import Encoder, in_memory
from git_theta.storage.objects import ObjectStore
from git_theta.storage.packs import MAX_PACK, build_pack

#: Tensors of fewer bytes than this are packed (measured: benchmarks/README.md, "Packs").
PACK_BELOW = 16 << 10
#: Fewer new small tensors than this in a file are stored as objects of their own: a pack would save nothing.
MIN_PACKED = 4


class SmallTensors:
    """The new small tensors of one file: encoded as they are read, stored in packs by ``finish``."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def hold(
        self, encoder: Encoder, spec: TensorSpec, data: memoryview, digest: str, previous: TensorEntry | None
    ) -> TensorEntry | None:
        """Encode a new small tensor and return its entry, to be completed by ``finish``; None if it is not small."""
        if len(data) >= PACK_BELOW:
            return None
        encoded = in_memory(partial(encoder.write_dense, data=data, digest=digest, group=itemsize(spec.dtype)))
        with self._lock:
            self._objects[spec.name] = encoded
        return with_previous(TensorEntry(spec.dtype, spec.shape, len(data), digest, "", 0), previous)

    def finish(self, store: ObjectStore, entries: dict[str, TensorEntry]) -> None:
        """Store the held tensors of ``entries`` (the whole file, in its order) and fill in where they are."""
        names = [name for name in entries if name in self._objects]
        if len(names) < MIN_PACKED:
            for name in names:
                oid, stored = store.put(self._objects[name])
                entries[name] = entries[name]._replace(oid=oid, stored=stored)
            return
        for group in _split(names, self._objects):
            self._store_pack(store, group, entries)

    def _store_pack(self, store: ObjectStore, names: list[str], entries: dict[str, TensorEntry]) -> None:
        pieces = list(dict.fromkeys(self._objects[name] for name in names))  # equal objects once, first place kept
        pack, located = build_pack(pieces)
        oid, stored = store.put(pack)
        where = dict(zip(pieces, located, strict=True))
        for name in names:
            entries[name] = entries[name]._replace(oid=oid, stored=stored, packed=where[self._objects[name]])


def _split(names: list[str], objects: dict[str, bytes]) -> list[list[str]]:
    """``names`` in runs whose objects fit in one pack."""
    groups: list[list[str]] = [[]]
    size = 0
    for name in names:
        length = len(objects[name]) + 4
        if groups[-1] and size + length > MAX_PACK - 64:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += length
    return groups
