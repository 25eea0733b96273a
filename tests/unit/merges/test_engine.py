"""The per-tensor rules of a merge, on metadata with an in-memory tensor store (docs/merges.md, "Rules")."""

from __future__ import annotations

import hashlib
import io
import json
import struct

import ml_dtypes
import numpy as np
import pytest

from git_theta.checkpoints.base import Checkpoint, CheckpointError, TensorSpec
from git_theta.checkpoints.numpy import NpzCheckpoint
from git_theta.checkpoints.safetensors import SafetensorsCheckpoint
from git_theta.merges.base import Conflict, MergeError, load_strategy
from git_theta.merges.choose import Chooser, parse_pattern
from git_theta.merges.engine import merge_metadata
from git_theta.merges.menu import Menu
from git_theta.metadata import CheckpointMetadata, TensorEntry

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "BF16": ml_dtypes.bfloat16}


class MemoryTensors:
    """Tensors by oid, in memory; records what was decoded."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.loaded: list[str] = []

    def entry(self, array: np.ndarray, dtype: str = "F32") -> TensorEntry:
        data = np.ascontiguousarray(array, DTYPES[dtype]).tobytes()
        digest = hashlib.sha256(data).hexdigest()
        self.objects[digest] = data
        return TensorEntry(dtype, tuple(array.shape), len(data), "sha256:" + digest, digest, len(data))

    def require(self, entries) -> None:
        assert all(entry.oid in self.objects for entry in entries)

    def load(self, name: str, entry: TensorEntry) -> bytes:
        self.loaded.append(name)
        return self.objects[entry.oid]

    def blocks(self, name: str, entry: TensorEntry):
        """The bytes in pieces of an odd size, unlike the engine's chunks (as the store's blocks are)."""
        self.loaded.append(name)
        data = self.objects[entry.oid]
        for start in range(0, len(data), 100_003):
            yield memoryview(data[start : start + 100_003])

    def store(self, spec: TensorSpec, data: memoryview) -> TensorEntry:
        array = np.frombuffer(bytes(data), DTYPES[spec.dtype]).reshape(spec.shape)
        return self.entry(array, spec.dtype)

    def load_format(self, format_data: dict) -> dict:
        return format_data  # these tests' format data holds no byte strings

    def store_format(self, format_data: dict) -> dict:
        return format_data

    def value(self, entry: TensorEntry) -> np.ndarray:
        return np.frombuffer(self.objects[entry.oid], DTYPES[entry.dtype]).reshape(entry.shape)


@pytest.fixture
def io_() -> MemoryTensors:
    return MemoryTensors()


def checkpoint(io_: MemoryTensors, tensors: dict[str, np.ndarray], dtype: str = "F32") -> CheckpointMetadata:
    entries = {name: io_.entry(array, dtype) for name, array in tensors.items()}
    return CheckpointMetadata("npz", entries, {"compressed": False})


def merge(base, sides, io_, strategy=None, patterns=(), weights=None):
    chooser = Chooser(load_strategy(strategy) if strategy else None, [parse_pattern(p) for p in patterns])
    return merge_metadata("model.npz", base, sides, chooser, io_, weights)


A = np.arange(6, dtype=np.float32).reshape(2, 3)


def test_one_sided_and_identical_changes_are_taken_without_decoding(io_: MemoryTensors) -> None:
    base = checkpoint(io_, {"a": A, "b": A, "c": A, "d": A})
    ours = checkpoint(io_, {"a": A + 1, "b": A, "c": A + 5, "d": A})
    theirs = checkpoint(io_, {"a": A, "b": A + 2, "c": A + 5, "e": A})
    outcome = merge(base, [ours, theirs], io_)
    tensors = outcome.metadata.tensors
    assert list(tensors) == ["a", "b", "c", "e"]  # d deleted on one side only, e added on one side only
    assert tensors["a"] is ours.tensors["a"] and tensors["b"] is theirs.tensors["b"]  # entries copied whole
    assert tensors["c"] is ours.tensors["c"] and tensors["e"] is theirs.tensors["e"]
    assert io_.loaded == [] and outcome.unresolved == []


def test_tensors_changed_differently_use_the_strategy(io_: MemoryTensors) -> None:
    base = checkpoint(io_, {"w": A, "bias": A})
    ours = checkpoint(io_, {"w": A + 1, "bias": A + 1})
    theirs = checkpoint(io_, {"w": A + 3, "bias": A - 1})
    outcome = merge(base, [ours, theirs], io_, "average", patterns=["bi*=theirs"])
    assert np.array_equal(io_.value(outcome.metadata.tensors["w"]), A + 2)
    assert outcome.metadata.tensors["bias"] is theirs.tensors["bias"]
    assert dict(outcome.merged) == {"average": 1, "theirs": 1}
    transfer = merge(base, [ours, theirs], io_, "task-arithmetic")
    assert np.array_equal(io_.value(transfer.metadata.tensors["w"]), A + 4)


def test_without_a_strategy_conflicts_are_left_unresolved(io_: MemoryTensors) -> None:
    base = checkpoint(io_, {"w": A})
    outcome = merge(base, [checkpoint(io_, {"w": A + 1}), checkpoint(io_, {"w": A + 2})], io_)
    assert outcome.metadata is None
    assert outcome.unresolved == [("w", "no merge strategy was chosen")]


def test_delete_against_change_takes_a_side_only(io_: MemoryTensors) -> None:
    base = checkpoint(io_, {"w": A, "k": A})
    ours, theirs = checkpoint(io_, {"k": A}), checkpoint(io_, {"w": A + 1, "k": A})
    assert merge(base, [ours, theirs], io_, "average").unresolved == [
        ("w", "average cannot merge it: it was deleted on one side and changed on another")
    ]
    assert list(merge(base, [ours, theirs], io_, "ours").metadata.tensors) == ["k"]
    assert merge(base, [ours, theirs], io_, "theirs").metadata.tensors["w"] is theirs.tensors["w"]


def test_shape_dtype_and_ancestor_rules(io_: MemoryTensors) -> None:
    base = checkpoint(io_, {"w": A})
    reshaped = checkpoint(io_, {"w": np.zeros((3, 3), np.float32)})
    changed = checkpoint(io_, {"w": A + 1})
    assert "dtype or shape differs" in merge(base, [changed, reshaped], io_, "average").unresolved[0][1]
    assert merge(base, [changed, reshaped], io_, "theirs").metadata.tensors["w"] is reshaped.tensors["w"]
    ints = [checkpoint(io_, {"n": np.array([v])}, "I64") for v in (1, 2, 3)]
    assert "not floating point" in merge(ints[0], ints[1:], io_, "average").unresolved[0][1]
    added = [checkpoint(io_, {"x": A + 1}), checkpoint(io_, {"x": A + 3})]
    assert "no common ancestor" in merge(None, added, io_, "task-arithmetic").unresolved[0][1]
    assert np.array_equal(io_.value(merge(None, added, io_, "average").metadata.tensors["x"]), A + 2)


def test_n_way_rules_and_weights(io_: MemoryTensors) -> None:
    base = checkpoint(io_, {"w": A, "only": A})
    sides = [
        checkpoint(io_, {"w": A + 1, "only": A}),
        checkpoint(io_, {"w": A + 2, "only": A + 7}),
        checkpoint(io_, {"w": A + 6, "only": A}),
    ]
    outcome = merge(base, sides, io_, "average", weights=[1, 2, 1])
    assert np.allclose(io_.value(outcome.metadata.tensors["w"]), A + (1 + 4 + 6) / 4)
    assert outcome.metadata.tensors["only"] is sides[1].tensors["only"]
    with pytest.raises(MergeError, match="2 weight"):
        merge(base, sides, io_, "average:weights=1/2")


def test_low_precision_tensors_are_computed_in_float_and_cast_back(io_: MemoryTensors) -> None:
    values = np.linspace(-3, 3, 12).reshape(3, 4)
    base = checkpoint(io_, {"w": values}, "BF16")
    ours, theirs = checkpoint(io_, {"w": values * 1.5}, "BF16"), checkpoint(io_, {"w": values + 0.3}, "BF16")
    got = io_.value(merge(base, [ours, theirs], io_, "average").metadata.tensors["w"])
    expected = ((io_.value(ours.tensors["w"]).astype(np.float64) + io_.value(theirs.tensors["w"])) / 2).astype(
        ml_dtypes.bfloat16
    )
    assert got.dtype == ml_dtypes.bfloat16 and np.array_equal(got.view(np.uint16), expected.view(np.uint16))


def test_large_tensors_are_merged_a_chunk_at_a_time(io_: MemoryTensors) -> None:
    big = np.random.default_rng(0).standard_normal(600_001)
    base = checkpoint(io_, {"w": big}, "F64")
    ours, theirs = checkpoint(io_, {"w": big * 2}, "F64"), checkpoint(io_, {"w": big * 3}, "F64")
    got = io_.value(merge(base, [ours, theirs], io_, "task-arithmetic:lambda=0.5").metadata.tensors["w"])
    np.testing.assert_allclose(got, big + 0.5 * (big + 2 * big))


@pytest.mark.parametrize("spec", ["ties:density=0.3", "dare:drop=0.5,then=ties,density=0.5", "dare:seed=2", "slerp"])
def test_streamed_passes_give_the_whole_tensor_formula(io_: MemoryTensors, spec: str) -> None:
    # Several chunks, read from pieces of another size: the same values as the formula on whole float32 arrays.
    rng = np.random.default_rng(4)
    base = rng.standard_normal(600_001).astype(np.float32)
    versions = [base + rng.standard_normal(base.size).astype(np.float32) for _ in range(2)]
    sides = [checkpoint(io_, {"w": version}) for version in versions]
    got = io_.value(merge(checkpoint(io_, {"w": base}), sides, io_, spec).metadata.tensors["w"])
    expected = load_strategy(spec).merge(base, versions, [1.0, 1.0], "w")
    assert got.dtype == expected.dtype == np.float32 and np.array_equal(got, expected)


def safetensors_metadata(io_: MemoryTensors, tensors: dict[str, np.ndarray]) -> CheckpointMetadata:
    from safetensors.numpy import save

    data = save(tensors, metadata={"note": "kept"})
    format_data, read = SafetensorsCheckpoint().read(io.BytesIO(data), "x")
    entries = {t.spec.name: io_.entry(np.frombuffer(t.data, np.float32).reshape(t.spec.shape)) for t in read}
    return CheckpointMetadata("safetensors", entries, format_data)


def test_safetensors_header_is_rebuilt_when_tensors_are_added_or_removed(io_: MemoryTensors) -> None:
    from safetensors.numpy import load

    base = safetensors_metadata(io_, {"a": A, "b": A, "gone": A})
    ours = safetensors_metadata(io_, {"a": A + 1, "b": A})
    theirs = safetensors_metadata(io_, {"a": A, "b": A + 2, "new": np.ones(5, np.float32), "gone": A})
    merged = merge(base, [ours, theirs], io_).metadata
    specs = [TensorSpec(name, e.dtype, e.shape) for name, e in merged.tensors.items()]
    out = io.BytesIO()
    SafetensorsCheckpoint().write(merged.format, specs, [io_.objects[e.oid] for e in merged.tensors.values()], out)
    header_length = struct.unpack("<Q", out.getvalue()[:8])[0]
    assert header_length % 8 == 0 and json.loads(out.getvalue()[8 : 8 + header_length])["__metadata__"] == {
        "note": "kept"
    }
    loaded = load(out.getvalue())
    assert sorted(loaded) == ["a", "b", "new"]
    assert np.array_equal(loaded["a"], A + 1) and np.array_equal(loaded["b"], A + 2)
    # Reading the rebuilt file lists the tensors in the metadata's order: a checkout stays clean.
    _, again = SafetensorsCheckpoint().read(io.BytesIO(out.getvalue()), "x")
    assert [t.spec.name for t in again] == list(merged.tensors)


def test_unchanged_tensor_list_keeps_the_format_data_exactly(io_: MemoryTensors) -> None:
    base = safetensors_metadata(io_, {"a": A, "b": A})
    ours, theirs = safetensors_metadata(io_, {"a": A + 1, "b": A}), safetensors_metadata(io_, {"a": A, "b": A + 1})
    assert merge(base, [ours, theirs], io_).metadata.format is ours.format


def test_torch_and_npz_rebuild_hooks() -> None:
    from git_theta.checkpoints.torch import TorchCheckpoint

    spec = lambda name: TensorSpec(name, "F32", (2,))  # noqa: E731
    structure = {"dict": [["enc", {"dict": [["w", {"tensor": "enc/w"}], ["b", {"tensor": "enc/b"}]]}]]}
    structure["dict"].append(["step", {"value": 3}])
    old = [spec("enc/w"), spec("enc/b")]
    new = [spec("enc/w"), spec("enc/extra"), spec("head/w")]
    format_data, ordered = TorchCheckpoint.rebuild_format({"structure": structure}, old, new)
    assert [s.name for s in ordered] == ["enc/w", "enc/extra", "head/w"]
    assert format_data["structure"]["dict"][1] == ["step", {"value": 3}]
    assert NpzCheckpoint.rebuild_format({"compressed": True}, old, new) == ({"compressed": True}, new)

    class Fixed(Checkpoint):
        name = "fixed"
        sniff = read = write = None  # type: ignore[assignment]

    assert Fixed.rebuild_format({"x": 1}, old, list(old)) == ({"x": 1}, old)
    with pytest.raises(CheckpointError, match="the fixed format cannot add, remove"):
        Fixed.rebuild_format({}, old, new)


def test_menu_asks_with_apply_to_all(io_: MemoryTensors) -> None:
    answers, out = io.StringIO("nonsense\nties:density=2\naverage!\n"), io.StringIO()
    chooser = Chooser(menu=Menu(answers, out))
    base = checkpoint(io_, {"x": A, "y": A, "n": np.array([1])})
    base.tensors["n"] = io_.entry(np.array([1]), "I64")
    ours = checkpoint(io_, {"x": A + 1, "y": A + 1})
    ours.tensors["n"] = io_.entry(np.array([2]), "I64")
    theirs = checkpoint(io_, {"x": A + 3, "y": A + 5})
    theirs.tensors["n"] = io_.entry(np.array([3]), "I64")
    outcome = merge_metadata("m.npz", base, [ours, theirs], chooser, io_)
    assert outcome.unresolved == [("n", "average cannot merge it: its dtype I64 is not floating point")]
    assert "unknown merges plugin 'nonsense'" in out.getvalue() and "density must be in" in out.getvalue()
    assert "tensor 'x' changed on both sides" in out.getvalue() and "tensor 'y'" not in out.getvalue()
    # Integer tensors are offered only the strategies that apply.
    menu = Menu(io.StringIO("2\n"), io.StringIO())
    conflict = Conflict("n", base.tensors["n"], (ours.tensors["n"], theirs.tensors["n"]))
    strategy, all_ = menu.ask("m.npz", conflict)
    assert strategy.name == "ours" and not all_  # listed: base, ours, theirs
