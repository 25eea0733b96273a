"""Tensors read back from the object store: the one place that turns a metadata entry into exact bytes."""

from __future__ import annotations

from concurrent.futures import Executor

from git_theta.metadata import TensorEntry
from git_theta.storage.codec import decode
from git_theta.storage.objects import ObjectStore


def tensor_label(path: str, name: str, entry: TensorEntry) -> str:
    """How errors name a tensor's object."""
    return f"{entry.oid[:12]} (tensor {name!r} of {path})"


def read_tensor(store: ObjectStore, entry: TensorEntry, label: str, executor: Executor | None = None) -> memoryview:
    """Return the exact bytes of the tensor ``entry`` describes, checked against its hash."""
    with store.open(entry.oid) as stream:
        return decode(stream, entry.hash, entry.nbytes, entry.stored, label, executor=executor)
