"""The clean and smudge filters in-process: every bit counts, equal tensors are stored once, bad input is refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from git_theta.checkpoints.base import CheckpointError
from git_theta.filters.smudge import smudge
from git_theta.metadata import CheckpointMetadata, MetadataError
from git_theta.plugins import PluginError
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import MemoryObjectStore
from tests.needs import TORCH, needs_module
from tests.unit.support import (
    FLOAT_DTYPES,
    PROPERTY,
    assert_one_line_error,
    clean_bytes,
    filter_context,
    names,
    round_trip,
    smudge_bytes,
    staged_context,
)
from tests.unit.torch_support import (
    SAFETENSORS_DTYPES,
    TORCH_DTYPES,
    assert_same_structure,
    tensor_bytes,
    torch_tensor,
    torch_tensors,
)

torch = needs_module("torch", TORCH)
safetensors_torch = needs_module("safetensors.torch", TORCH)

DTYPE_NAMES = {dtype: name for name, dtype in TORCH_DTYPES.items()}


def entries(metadata: bytes) -> dict:
    return CheckpointMetadata.loads(metadata).tensors


# --- exactness: the smallest change is a change


@PROPERTY
@given(tensors=st.dictionaries(names, torch_tensors(SAFETENSORS_DTYPES), min_size=1, max_size=4), data=st.data())
def test_one_bit_flip_changes_that_tensor_only(tensors: dict[str, torch.Tensor], data: st.DataObject) -> None:
    candidates = sorted(name for name, tensor in tensors.items() if tensor.numel())
    assume(candidates)
    name = data.draw(st.sampled_from(candidates))
    dtype = DTYPE_NAMES[tensors[name].dtype]
    raw = bytearray(tensor_bytes(tensors[name]))
    byte = data.draw(st.integers(0, len(raw) - 1))
    raw[byte] ^= 1 if dtype == "BOOL" else 1 << data.draw(st.integers(0, 7))
    edited = {**tensors, name: torch_tensor(dtype, tuple(tensors[name].shape), bytes(raw))}

    original_file, edited_file = safetensors_torch.save(tensors), safetensors_torch.save(edited)
    with staged_context() as context:
        before = clean_bytes(original_file, "m.safetensors", context)
        context.stage("m.safetensors", before)  # git add: the unchanged tensors keep their entries (and packs)
        after = clean_bytes(edited_file, "m.safetensors", context)
        assert smudge_bytes(after, "m.safetensors", context) == edited_file
        assert smudge_bytes(before, "m.safetensors", context) == original_file
    old, new = entries(before), entries(after)
    assert new[name].hash != old[name].hash and new[name].oid != old[name].oid
    for other in tensors.keys() - {name}:
        assert new[other] == old[other]
    changed_lines = [a for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(changed_lines) == 1  # git diff of the metadata names exactly the edited tensor


def _next_up(tensor: torch.Tensor) -> torch.Tensor:
    """The next representable value above each positive finite element (one more in the bit pattern)."""
    width = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}[tensor.element_size()]
    return (tensor.view(width) + 1).view(tensor.dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_nextafter_one_is_kept(dtype: str) -> None:
    """The original Git-Theta's approximate hash dropped edits like 1.0 -> 1.0000005; every ulp must count here."""
    ones = torch.ones(100, dtype=TORCH_DTYPES[dtype])
    edited = ones.clone()
    edited[37] = _next_up(ones[37:38])[0]
    assert edited[37].double() > 1.0
    other = torch.linspace(-1, 1, 50).to(TORCH_DTYPES[dtype])
    with filter_context() as context:
        before = clean_bytes(safetensors_torch.save({"w": ones, "b": other}), "m.safetensors", context)
        after = clean_bytes(safetensors_torch.save({"w": edited, "b": other}), "m.safetensors", context)
        rebuilt = safetensors_torch.load(smudge_bytes(after, "m.safetensors", context))
    assert entries(after)["w"].hash != entries(before)["w"].hash
    assert entries(after)["w"].oid != entries(before)["w"].oid
    assert entries(after)["b"] == entries(before)["b"]
    assert tensor_bytes(rebuilt["w"]) == tensor_bytes(edited)
    assert rebuilt["w"][37].double() > 1.0


def test_nextafter_in_float32_npz_and_torch() -> None:
    weights = np.ones((8, 8), dtype=np.float32)
    edited = weights.copy()
    edited[3, 5] = np.nextafter(np.float32(1), np.float32(2))  # 1.0000001
    with filter_context() as context:
        for old, new in [(weights, edited), (torch.from_numpy(weights), torch.from_numpy(edited))]:
            files = []
            for value in (old, new):
                buffer = io.BytesIO()
                if isinstance(value, np.ndarray):
                    np.savez(buffer, w=value)
                    path = "m.npz"
                else:
                    torch.save({"w": value}, buffer)
                    path = "m.pt"
                files.append(clean_bytes(buffer.getvalue(), path, context))
            assert entries(files[0])["w"].hash != entries(files[1])["w"].hash, path
            assert entries(files[0])["w"].oid != entries(files[1])["w"].oid, path
            back = smudge_bytes(files[1], path, context)
            if path == "m.npz":
                assert np.load(io.BytesIO(back))["w"][3, 5] == edited[3, 5]
            else:
                assert_same_structure(torch.load(io.BytesIO(back), weights_only=True), {"w": torch.from_numpy(edited)})


@pytest.mark.parametrize("value", [float("nan"), -0.0, float("inf")], ids=["nan", "negative zero", "inf"])
def test_special_values_are_distinct_bit_patterns(value: float) -> None:
    base = torch.zeros(16)
    special = base.clone()
    special[0] = value
    quiet = torch.tensor([0x7FC00001], dtype=torch.int32).view(torch.float32)  # a NaN with a payload
    with filter_context() as context:
        metas = [clean_bytes(safetensors_torch.save({"w": t}), "m.safetensors", context) for t in (base, special)]
        payload = clean_bytes(safetensors_torch.save({"w": quiet}), "m.safetensors", context)
        rebuilt = safetensors_torch.load(smudge_bytes(payload, "m.safetensors", context))
    assert entries(metas[0])["w"].hash != entries(metas[1])["w"].hash
    assert tensor_bytes(rebuilt["w"]) == tensor_bytes(quiet)


# --- dedup: equal tensors are stored once


class CountingStore(MemoryObjectStore):
    """Counts how many objects were encoded (writers opened)."""

    def __init__(self) -> None:
        super().__init__()
        self.writers = 0

    def writer(self):  # type: ignore[override]
        self.writers += 1
        return super().writer()


def test_identical_tensors_in_one_file_are_stored_once() -> None:
    shared = torch.randn(128, 64)  # too large to be packed (packed ones: tests/unit/representations/test_packing.py)
    tensors = {"a": shared, "b": shared.clone(), "c": torch.randn(32), "d": shared.clone()}
    store = CountingStore()
    with filter_context(store) as context:
        metadata, rebuilt = round_trip(safetensors_torch.save(tensors), "m.safetensors", context)
    assert metadata.tensors["a"].oid == metadata.tensors["b"].oid == metadata.tensors["d"].oid
    # Objects, not writers: identical tensors in flight on two threads may both be encoded (same oid either way).
    assert len(store.objects) == 2
    assert rebuilt == safetensors_torch.save(tensors)


def test_identical_tensors_across_files_are_stored_once() -> None:
    torch.manual_seed(0)
    embed, head = torch.randn(64, 16), torch.randn(16)
    first = safetensors_torch.save({"embed": embed, "head": head})
    second = safetensors_torch.save({"embed": embed.clone(), "head": head + 1, "extra": torch.randn(4)})
    store = CountingStore()
    with filter_context(store) as context:
        meta1 = clean_bytes(first, "v1.safetensors", context)
        assert len(store.objects) == 2
        meta2 = clean_bytes(second, "v2.safetensors", context)
        assert len(store.objects) == 4  # only the changed head and the new tensor
        assert entries(meta1)["embed"] == entries(meta2)["embed"]
        writers = store.writers
        assert clean_bytes(first, "v1.safetensors", context) == meta1
        assert store.writers == writers  # nothing encoded again for tensors the context has seen
        assert smudge_bytes(meta1, "v1.safetensors", context) == first
        assert smudge_bytes(meta2, "v2.safetensors", context) == second


def test_same_store_different_contexts_and_formats() -> None:
    array = np.random.default_rng(0).standard_normal((40, 10)).astype(np.float32)
    store = MemoryObjectStore()
    npz = io.BytesIO()
    np.savez(npz, w=array)
    with filter_context(store) as context:
        from_safetensors = clean_bytes(safetensors_torch.save({"w": torch.from_numpy(array)}), "a.safetensors", context)
    count = len(store.objects)
    with filter_context(store) as context:  # a later git command: a fresh context, the same store
        again = clean_bytes(safetensors_torch.save({"w": torch.from_numpy(array)}), "a.safetensors", context)
        from_npz = clean_bytes(npz.getvalue(), "a.npz", context)
    assert again == from_safetensors
    assert entries(from_npz)["w"] == entries(from_safetensors)["w"]  # encoding is deterministic: the same object
    assert len(store.objects) == count == 1


def test_empty_tensors_of_any_dtype_share_one_object() -> None:
    tensors = {"f": torch.empty(0), "i": torch.empty(3, 0, dtype=torch.int64), "b": torch.empty(0, dtype=torch.bool)}
    with filter_context() as context:
        metadata, rebuilt = round_trip(safetensors_torch.save(tensors), "m.safetensors", context)
        assert len({entry.oid for entry in metadata.tensors.values()}) == 1
        assert len(context.store.objects) == 1
    assert rebuilt == safetensors_torch.save(tensors)


# --- what is not a checkpoint


def test_empty_file_stays_empty() -> None:
    with filter_context() as context:
        assert clean_bytes(b"", "m.safetensors", context) == b""
        assert smudge_bytes(b"", "m.safetensors", context) == b""
        assert not context.store.objects


def test_metadata_is_passed_through() -> None:
    with filter_context() as context:
        metadata = clean_bytes(safetensors_torch.save({"w": torch.ones(2)}), "m.safetensors", context)
    with filter_context() as fresh:
        assert clean_bytes(metadata, "m.safetensors", fresh) == metadata
        assert not fresh.store.objects


def test_broken_metadata_is_refused_naming_the_path() -> None:
    broken = b'{\n  "git_theta_metadata": 1,\n  "checkpoint_type": "safetensors",\n  "tensors": '
    with filter_context() as context:
        for run in (clean_bytes, smudge_bytes):
            with pytest.raises(MetadataError) as excinfo:
                run(broken, "dir/m.safetensors", context)
            assert_one_line_error(excinfo, "dir/m.safetensors")


def test_smudge_passes_other_content_through() -> None:
    with filter_context() as context:
        for data in (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n", bytes(range(256))):
            assert smudge_bytes(data, "m.safetensors", context) == data


def test_smudge_unknown_checkpoint_type() -> None:
    metadata = CheckpointMetadata("onnx").dumps()
    with filter_context() as context, pytest.raises(PluginError):
        smudge_bytes(metadata, "m.onnx", context)


# --- objects missing or corrupt


def _cleaned() -> tuple[MemoryObjectStore, bytes]:
    store = MemoryObjectStore()
    tensors = {"a": torch.randn(100), "b": torch.arange(50, dtype=torch.int32)}
    with filter_context(store) as context:
        return store, clean_bytes(safetensors_torch.save(tensors), "m.safetensors", context)


def test_missing_objects_fail_before_anything_is_written() -> None:
    store, metadata = _cleaned()
    del store.objects[entries(metadata)["b"].oid]
    with filter_context(store) as context, pytest.raises(ObjectError) as excinfo:
        smudge(metadata, "dir/m.safetensors", context)  # smudge() itself raises: no writer is returned
    assert_one_line_error(excinfo, "dir/m.safetensors")


@pytest.mark.parametrize("damage", ["flip last byte", "truncate", "swap objects", "empty"])
def test_corrupt_objects_are_detected(damage: str) -> None:
    store, metadata = _cleaned()
    a, b = entries(metadata)["a"].oid, entries(metadata)["b"].oid
    if damage == "flip last byte":
        store.objects[a] = store.objects[a][:-1] + bytes([store.objects[a][-1] ^ 1])
    elif damage == "truncate":
        store.objects[a] = store.objects[a][:-10]
    elif damage == "swap objects":
        store.objects[a], store.objects[b] = store.objects[b], store.objects[a]
    else:
        store.objects[a] = b""
    with filter_context(store) as context, pytest.raises(ObjectError) as excinfo:
        smudge_bytes(metadata, "dir/m.safetensors", context)
    assert "\n" not in str(excinfo.value)
    assert "m.safetensors" in str(excinfo.value) and "'a'" in str(excinfo.value)


# --- any bytes: refused clearly, or rebuilt exactly


@PROPERTY
@given(data=st.binary(min_size=1, max_size=600), path=st.sampled_from(["x.safetensors", "x.npz", "x", "x.ckpt"]))
def test_random_bytes_are_refused_or_round_trip(data: bytes, path: str) -> None:
    with filter_context() as context:
        try:
            metadata = clean_bytes(data, path, context)
        except (CheckpointError, MetadataError) as exc:  # MetadataError: starts like metadata but is not
            assert "\n" not in str(exc) and path in str(exc), str(exc)
            return
        rebuilt = smudge_bytes(metadata, path, context)
        assert clean_bytes(rebuilt, path, context) == metadata
        if CheckpointMetadata.loads(metadata).checkpoint_type == "safetensors":
            assert rebuilt == data


@pytest.mark.parametrize("dtype", SAFETENSORS_DTYPES)
def test_stored_size_is_reported(dtype: str) -> None:
    tensor = torch.zeros(4096, dtype=TORCH_DTYPES[dtype])
    with filter_context() as context:
        entry = entries(clean_bytes(safetensors_torch.save({"z": tensor}), "m.safetensors", context))["z"]
        assert entry.stored == len(context.store.objects[entry.oid])
    assert entry.stored < entry.nbytes  # zeros compress
