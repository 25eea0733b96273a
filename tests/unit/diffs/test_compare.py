"""Comparing sides tensor by tensor, and presenting the result: in-process, on in-memory tensors."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from git_theta.checkpoints.base import Decoded, Tensor, TensorSpec
from git_theta.checkpoints.safetensors import SafetensorsCheckpoint
from git_theta.diffs.compare import Item, Side, diff_sides
from git_theta.diffs.render import as_json, patch, select, table
from git_theta.diffs.result import ADDED, MODIFIED, REMOVED, Layout

DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64"}


def stored(tensors: dict[str, np.ndarray], loaded: list[str]) -> Side:
    """A side as metadata describes it; records which tensors had to be decoded."""

    def loader(name: str, data: bytes):
        def load() -> memoryview:
            loaded.append(name)
            return memoryview(data)

        return load

    items = []
    for name, array in tensors.items():
        data = array.tobytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        items.append(Item(name, Layout(DTYPES[array.dtype], array.shape), digest, loader(name, data)))
    return Side(items, "safetensors")


def streamed(tensors: dict[str, np.ndarray]) -> Side:
    """A side read from a checkpoint file."""
    tensors_read = (Tensor(TensorSpec(name, DTYPES[a.dtype], a.shape), a.tobytes()) for name, a in tensors.items())
    return Side.read(tensors_read, SafetensorsCheckpoint)


OLD = {
    "same": np.arange(6, dtype=np.float32),
    "edited": np.ones(4, dtype=np.float32),
    "reshaped": np.zeros(4, dtype=np.float32),
    "retyped": np.ones(2, dtype=np.float32),
    "dropped": np.zeros(3, dtype=np.int64),
}
NEW = {
    "same": np.arange(6, dtype=np.float32),
    "edited": np.array([1, 1, 3, 1], dtype=np.float32),
    "reshaped": np.zeros(5, dtype=np.float32),
    "retyped": np.ones(2, dtype=np.float64),
    "born": np.ones(2, dtype=np.float64),
}


def check(result) -> None:
    by_name = {t.name: t for t in result.tensors}
    assert set(by_name) == {"edited", "reshaped", "retyped", "dropped", "born"}
    assert result.unchanged == 1 and (result.old_tensors, result.new_tensors) == (5, 5)
    assert by_name["edited"].status == MODIFIED and by_name["edited"].change.changed == 1
    assert by_name["edited"].change.l2 == 2.0 and by_name["edited"].change.rel == 1.0
    assert by_name["reshaped"].change is None and by_name["reshaped"].new.shape == (5,)
    assert by_name["retyped"].change.changed == 0 and by_name["retyped"].new.dtype == "F64"
    assert by_name["dropped"].status == REMOVED and by_name["dropped"].old == Layout("I64", (3,))
    assert by_name["born"].status == ADDED and by_name["born"].new == Layout("F64", (2,))


def test_equal_hashes_are_never_decoded() -> None:
    loaded: list[str] = []
    result = diff_sides("m.safetensors", stored(OLD, loaded), stored(NEW, loaded))
    check(result)
    assert "same" not in loaded and sorted(set(loaded)) == ["edited", "retyped"]


def test_a_streamed_side_on_either_side_gives_the_same_result() -> None:
    check(diff_sides("m", stored(OLD, []), streamed(NEW)))
    check(diff_sides("m", streamed(OLD), stored(NEW, [])))
    check(diff_sides("m", streamed(OLD), streamed(NEW)))


def test_table_sort_threshold_and_json() -> None:
    result = diff_sides("m.safetensors", stored(OLD, []), stored(NEW, []))
    assert [t.name for t in select(result, "name")] == ["born", "dropped", "edited", "reshaped", "retyped"]
    assert [t.name for t in select(result, "rel", threshold=0.5)][-1] == "edited"
    assert "retyped" not in [t.name for t in select(result, "order", threshold=1e-3)]  # rel 0: below
    text = table([result], ("HEAD~1", "HEAD"), "rel", 1e-3)
    assert text.startswith("m.safetensors (HEAD~1 -> HEAD): 3 changed, 1 added, 1 removed, 1 unchanged")
    assert "(1 below the threshold not shown)" in text
    data = json.loads(as_json([result], ("HEAD~1", "HEAD"), "name", 0.0))
    entry = data["checkpoints"][0]
    assert (entry["changed"], entry["added"], entry["removed"], entry["unchanged"]) == (3, 1, 1, 1)
    edited = next(t for t in entry["tensors"] if t["name"] == "edited")
    assert edited["changed"] == 1 and edited["fraction"] == 0.25 and edited["l2"] == 2.0


def test_patch_has_one_plus_line_per_new_side_tensor() -> None:
    result = diff_sides("m.safetensors", stored(OLD, []), stored(NEW, []))
    text = patch(result, "m.safetensors", "m.safetensors")
    plus = [line for line in text.splitlines() if line.startswith("+    ")]
    minus = [line for line in text.splitlines() if line.startswith("-    ")]
    assert len(plus) == 4 and len(minus) == 4  # edited, reshaped, retyped on both; born / dropped on one
    assert any("edited" in line and "changed 1/4 (25.00%)" in line for line in plus)
    assert text.splitlines()[3].startswith("@@ 3 changed, 1 added, 1 removed, 1 unchanged")


def test_encoded_tensors_compare_their_decoded_values_or_only_say_they_changed() -> None:
    """An encoded tensor (GGUF's quantized blocks) is compared on the values it stands for, when they decode."""
    halves = np.array([1, 2, 3, 4], np.uint8), np.array([1, 2, 3, 6], np.uint8)

    def item(data: np.ndarray, decode) -> Item:
        digest = "sha256:" + hashlib.sha256(data.tobytes()).hexdigest()
        load = lambda: memoryview(data.tobytes())  # noqa: E731
        return Item("q", Layout("U8", (4,)), digest, load, encoding="HALVES", decode=decode)

    def decode(data: memoryview) -> Decoded:  # two bytes per value: the value is their sum
        values = np.frombuffer(data, np.uint8).reshape(2, 2).sum(axis=1).astype("<f4")
        return Decoded("F32", (2,), memoryview(values.view(np.uint8)))

    (tensor,) = diff_sides("m", Side([item(halves[0], decode)]), Side([item(halves[1], decode)])).tensors
    assert (str(tensor.old), tensor.change.changed, tensor.change.elements) == ("HALVES [2]", 1, 2)
    assert tensor.change.l2 == 2.0
    (opaque,) = diff_sides(
        "m", Side([item(halves[0], lambda _: None)]), Side([item(halves[1], lambda _: None)])
    ).tensors
    assert opaque.status == MODIFIED and opaque.change is None and str(opaque.new) == "U8 [4]"
