"""Small tensors of a file are packed: new ones together in one object, unchanged ones where they already are."""

from __future__ import annotations

import numpy as np
from safetensors.numpy import save

from git_theta.metadata import CheckpointMetadata
from git_theta.representations.packing import MIN_PACKED, PACK_BELOW
from git_theta.storage.packs import parse_pack
from tests.unit.support import clean_bytes, filter_context, smudge_bytes, staged_context

F = "m.safetensors"
RNG = np.random.default_rng(0)


def tiny_model(count: int = 50) -> dict[str, np.ndarray]:
    return {f"t{index:03}": RNG.standard_normal(64).astype(np.float32) for index in range(count)}


def test_new_small_tensors_are_stored_in_one_pack_in_the_checkpoints_order() -> None:
    model = {**tiny_model(), "big": RNG.standard_normal(PACK_BELOW // 4).astype(np.float32)}
    with filter_context() as context:
        metadata = clean_bytes(save(model), F, context)
        assert smudge_bytes(metadata, F, context) == save(model)
        store = context.store
    tensors = CheckpointMetadata.loads(metadata).tensors
    assert tensors["big"].packed is None  # PACK_BELOW bytes: not small
    packs = {entry.oid for name, entry in tensors.items() if name != "big"}
    assert len(packs) == 1 and len(store.objects) == 2
    (pack,) = packs
    pieces = [entry.packed for name, entry in tensors.items() if name != "big"]
    assert pieces == sorted(pieces, key=lambda piece: piece[0])
    assert set(pieces) == parse_pack(store.objects[pack], "p")
    assert all(entry.update == "dense" for entry in tensors.values())


def test_the_same_file_gives_the_same_pack_and_metadata() -> None:
    model = tiny_model()
    with filter_context() as first, filter_context() as second:
        assert clean_bytes(save(model), F, first) == clean_bytes(save(model), F, second)
        assert first.store.objects == second.store.objects


def test_a_few_new_small_tensors_are_stored_as_objects_of_their_own() -> None:
    model = tiny_model(MIN_PACKED - 1)
    with filter_context() as context:
        metadata = clean_bytes(save(model), F, context)
        assert smudge_bytes(metadata, F, context) == save(model)
    tensors = CheckpointMetadata.loads(metadata).tensors
    assert all(entry.packed is None for entry in tensors.values())
    assert len({entry.oid for entry in tensors.values()}) == MIN_PACKED - 1


def test_one_changed_tiny_tensor_stores_one_small_new_object_and_keeps_the_pack() -> None:
    model = tiny_model()
    with staged_context() as context:
        before = clean_bytes(save(model), F, context)
        context.stage(F, before)
        objects = dict(context.store.objects)
        model["t007"] = model["t007"] + 1
        after = clean_bytes(save(model), F, context)
        assert smudge_bytes(after, F, context) == save(model)
        new_objects = set(context.store.objects) - set(objects)
    old, new = CheckpointMetadata.loads(before).tensors, CheckpointMetadata.loads(after).tensors
    assert [name for name in old if old[name] != new[name]] == ["t007"]
    assert new_objects == {new["t007"].oid} and new["t007"].update == "dense"  # small tensors are never deltas
    assert new["t007"].previous_entry() == old["t007"]._replace(previous=())  # diffs can read its old value


def test_many_changed_tiny_tensors_go_into_a_new_pack_beside_the_old_one() -> None:
    model = tiny_model()
    with staged_context() as context:
        before = clean_bytes(save(model), F, context)
        context.stage(F, before)
        for name in list(model)[:10]:
            model[name] = model[name] * 2
        after = clean_bytes(save(model), F, context)
        assert smudge_bytes(after, F, context) == save(model)
    old, new = CheckpointMetadata.loads(before).tensors, CheckpointMetadata.loads(after).tensors
    assert len({entry.oid for entry in new.values()}) == 2  # the old pack and one new one
    assert all(new[name] == old[name] for name in list(model)[10:])
    reloaded = CheckpointMetadata.loads(after)
    assert reloaded.dumps() == after and "packed" in after.decode()
