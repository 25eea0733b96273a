"""Two versions stored against one keyframe, streamed side by side: exact bytes of both, and a forged one fails."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from git_theta.checkpoints.base import Tensor, TensorSpec
from git_theta.metadata import TensorEntry
from git_theta.representations.cheapest import store_tensor, update_header, update_parts
from git_theta.representations.pairs import share_keyframe, stream_pair
from git_theta.session.context import Session
from git_theta.storage.encoder import Encoder
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import MemoryObjectStore
from git_theta.updates.base import raw_bytes
from git_theta.updates.delta import DeltaUpdate
from tests.unit.representations.test_store_and_read import dense_entry, digest, store_as


def versions(store: MemoryObjectStore, count: int, shape: tuple[int, ...]) -> tuple[list, list]:
    """``count`` fine-tune-like versions of one tensor, each stored as the clean filter stores it."""
    rng = np.random.default_rng(3)
    context = Session(store)
    value = (rng.standard_normal(shape) * 0.02).astype(np.float32)
    spec = TensorSpec("w", "F32", shape)
    arrays, entries = [], []
    for step in range(count):
        if step:
            value = value + (rng.standard_normal(shape) * 4e-5).astype(np.float32)
        _, entry = store_tensor(context, Tensor(spec, raw_bytes(value)))
        context.previous.setdefault("w", entry)
        arrays.append(value)
        entries.append(entry)
    context.close()
    return arrays, entries


def joined(pairs) -> tuple[bytes, bytes]:
    old, new = bytearray(), bytearray()
    for a, b in pairs:
        assert len(a) == len(b)
        old += a
        new += b
    return bytes(old), bytes(new)


def small_versions(store: MemoryObjectStore) -> tuple[list, list]:
    """Three versions of 64 floats, the later two stored as deltas of the first (one raw block each)."""
    rng = np.random.default_rng(4)
    first = rng.standard_normal(64).astype(np.float32)
    arrays = [first, first + np.float32(1e-3), first - np.float32(2e-3)]
    base = dense_entry(store, "F32", first)
    deltas = [store_as(store, "delta", DeltaUpdate().infer(first, new), base, new) for new in arrays[1:]]
    return arrays, [base, *deltas]


@pytest.mark.parametrize("large", [False, True])  # one raw block; several 1 MiB frames and a partial one
def test_the_keyframe_and_its_deltas_stream_side_by_side(large: bool) -> None:
    store = MemoryObjectStore()
    arrays, (first, second, third) = versions(store, 3, (1536, 1027)) if large else small_versions(store)
    assert second.update == third.update == "delta" and second.base == third.base == (first.link,)
    with ThreadPoolExecutor(2) as pool:
        for (i, a), (j, b) in [((0, first), (1, second)), ((1, second), (2, third)), ((2, third), (0, first))]:
            assert share_keyframe(a, b)
            assert joined(stream_pair(store, ("old", a), ("new", b), pool)) == (
                arrays[i].tobytes(),
                arrays[j].tobytes(),
            )


def test_versions_without_a_shared_keyframe_are_not_paired() -> None:
    store = MemoryObjectStore()
    _, (first, second) = versions(store, 2, (64,))
    _, (other, _) = versions(MemoryObjectStore(), 2, (32,))
    assert not share_keyframe(first, other)
    assert not share_keyframe(second._replace(update="sparse"), first)


def test_a_version_that_is_not_the_committed_tensor_fails_after_its_last_block() -> None:
    """A delta object that names another tensor than its sum with the keyframe gives (the sum is hashed)."""
    store = MemoryObjectStore()
    old = np.random.default_rng(5).standard_normal(1 << 20).astype(np.float32)
    new = old + np.float32(1e-4)
    first = dense_entry(store, "F32", old)
    other = digest(np.zeros_like(new).tobytes())
    header = update_header("delta", first, {})
    oid, stored = Encoder().store_update(store, update_parts(DeltaUpdate().infer(old, new)), other, header)
    forged = TensorEntry("F32", new.shape, new.nbytes, other, oid, stored, "delta", (first.link,))
    with ThreadPoolExecutor(2) as pool, pytest.raises(ObjectError, match="do not give the committed tensor"):
        joined(stream_pair(store, ("old", first), ("new", forged), pool))


def test_two_pieces_of_one_pack_are_not_read_as_one_keyframe() -> None:
    old = TensorEntry("F32", (4,), 16, digest(b"a" * 16), "0" * 64, 300, packed=(12, 60))
    new = old._replace(hash=digest(b"b" * 16), packed=(72, 60))
    assert not share_keyframe(old, new)
    assert share_keyframe(old._replace(packed=None), new._replace(packed=None))  # what the pack's oid alone says
