"""Tensors committed as a chosen update type: ``git theta add --update-type TYPE [--update-path X]``.

With an update file, the checkpoint in the working tree holds the previous weights and the file holds the update:
each updated tensor is committed as the update applied to the file's value (stored too, if new), or to the value
the update file gives for it (PEFT's saved embedding layers), and checkout rebuilds the new weights. Each
checkpoint's updates come from the request ``git theta add`` wrote (updates/requests.py). Without one, the
checkpoint holds the new weights and the update is inferred from the previous version, exactly or not at all: a
tensor whose change is not exactly of that type is stored in the cheapest exact form instead, and the filter says
so.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from git_theta import plugins
from git_theta.checkpoints.base import Tensor, TensorSpec
from git_theta.dtypes import itemsize
from git_theta.metadata import DENSE, TensorEntry
from git_theta.representations.cheapest import store_tensor, update_header, update_parts
from git_theta.representations.read import read_tensor
from git_theta.session.context import UPDATE_TYPE_ENV, Session
from git_theta.updates.base import TensorUpdate
from git_theta.updates.requests import UPDATE_REQUEST_ENV, FileUpdates

if TYPE_CHECKING:
    import numpy as np

    from git_theta.updates.base import Payload


class UpdateRequest:
    """The update type asked for, and this checkpoint's updates if an update file was given."""

    def __init__(self, kind: str, file: FileUpdates | None) -> None:
        self.kind = kind
        self.update = plugins.load(plugins.UPDATES, kind)()
        self.file = file

    @classmethod
    def from_environment(cls, path: str) -> UpdateRequest | None:
        """The request ``git theta add`` passed down for checkpoint ``path``, if any."""
        kind = os.environ.get(UPDATE_TYPE_ENV)
        if not kind:
            return None
        directory = os.environ.get(UPDATE_REQUEST_ENV)
        return cls(kind, FileUpdates.load(Path(directory), path) if directory else None)

    def finish(self, checkpoint: str) -> None:
        """Fail if some of this checkpoint's updates found no tensor."""
        if self.file is not None:
            self.file.check_all_used(checkpoint)


def store_requested(context: Session, request: UpdateRequest, tensor: Tensor) -> tuple[TensorSpec, TensorEntry]:
    """Store one tensor of a checkpoint added with ``--update-type``."""
    spec = tensor.spec
    if request.file is not None:
        update = request.file.take(spec.name)
        if update is None:
            return store_tensor(context, tensor)
        _, base = store_tensor(context, tensor)
        return spec, _apply_and_store(context, update, spec, base)
    return spec, _infer_and_store(context, request, tensor)


def _apply_and_store(context: Session, update: TensorUpdate, spec: TensorSpec, base: TensorEntry) -> TensorEntry:
    from git_theta.updates.base import as_array, raw_bytes

    old = as_array(read_tensor(context.store, base, f"{base.oid[:12]} (tensor {spec.name!r})"), spec.dtype, spec.shape)
    if update.base is not None and bytes(raw_bytes(update.base)) != bytes(raw_bytes(old)):
        base, old = store_tensor(context, Tensor(spec, raw_bytes(update.base)))[1], update.base  # the update's own base
    new = raw_bytes(plugins.load(plugins.UPDATES, update.kind)().apply(old, update.payload))
    if update.kind == DENSE:  # a new value: stored in its cheapest form, like any other
        return store_tensor(context, Tensor(spec, new))[1]
    if len(base.base) >= max(1, context.max_delta_depth):  # keep the chain bounded: the base becomes a keyframe
        base = _keyframe(context, spec, raw_bytes(old), base.hash)
    return _store_update(context, update.kind, spec, new, base, update.payload)


def _infer_and_store(context: Session, request: UpdateRequest, tensor: Tensor) -> TensorEntry:
    from git_theta.updates.base import as_array

    spec, data = tensor.spec, memoryview(tensor.data).cast("B")
    previous = context.previous.get(spec.name)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if previous is None or previous.hash == digest or (previous.dtype, previous.shape) != (spec.dtype, spec.shape):
        return store_tensor(context, tensor)[1]
    old = read_tensor(context.store, previous, f"{previous.oid[:12]} (previous value of tensor {spec.name!r})")
    old_array = as_array(old, spec.dtype, spec.shape)
    payload = request.update.infer(old_array, as_array(data, spec.dtype, spec.shape))
    exact = payload is not None and bytes(_rebuilt(request, old_array, payload)) == bytes(data)
    if not exact or len(previous.base) >= max(1, context.max_delta_depth):
        reason = "its change is not exactly" if not exact else "its chain of updates is at its limit for"
        _note(f"tensor {spec.name!r}: {reason} a {request.kind} update; stored in its cheapest exact form instead")
        return store_tensor(context, tensor)[1]
    return _store_update(context, request.kind, spec, data, previous, payload)


def _rebuilt(request: UpdateRequest, old_array: np.ndarray, payload: Payload) -> memoryview:
    from git_theta.updates.base import raw_bytes

    return raw_bytes(request.update.apply(old_array, payload))


def _store_update(
    context: Session, kind: str, spec: TensorSpec, new: memoryview, base: TensorEntry, payload: Payload
) -> TensorEntry:
    digest = "sha256:" + hashlib.sha256(new).hexdigest()
    known = context.file.stored(spec, digest)
    if known is not None:
        return known  # the update gives a tensor already stored
    header = update_header(kind, base, payload.params)
    oid, stored = context.encoder.store_update(context.store, update_parts(payload), digest, header)
    chain = (base.link, *base.base)
    return TensorEntry(spec.dtype, spec.shape, len(new), digest, oid, stored, kind, chain, previous=chain)


def _keyframe(context: Session, spec: TensorSpec, data: memoryview, digest: str) -> TensorEntry:
    oid, stored = context.encoder.store_dense(context.store, data, digest, itemsize(spec.dtype))
    return TensorEntry(spec.dtype, spec.shape, len(data), digest, oid, stored)


def _note(message: str) -> None:
    sys.stderr.write(f"git-theta: {message}\n")
