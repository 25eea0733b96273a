"""PyTorch checkpoints through clean and smudge: tensor-exact round trips, and nothing in the file is ever executed."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from git_theta.checkpoints.base import CheckpointError
from git_theta.checkpoints.torch import TorchCheckpoint
from git_theta.metadata import CheckpointMetadata, MetadataError
from tests.needs import TORCH, needs_module
from tests.unit.support import (
    PROPERTY,
    Evil,
    assert_one_line_error,
    clean_bytes,
    filter_context,
    round_trip,
    smudge_bytes,
)
from tests.unit.torch_support import TORCH_DTYPES, assert_same_structure, torch_tensors

torch = needs_module("torch", TORCH)

LABEL = "ckpt/bad.pt"
ALL_DTYPES = list(TORCH_DTYPES)


def save(obj: Any, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def load(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), weights_only=True)


@st.composite
def tensor_views(draw: st.DrawFn) -> torch.Tensor:
    """Tensors of every dtype, sometimes a transposed or offset view into a larger storage."""
    tensor = draw(torch_tensors(ALL_DTYPES))
    view = draw(st.sampled_from(["whole", "transposed", "offset"]))
    if view == "transposed" and tensor.dim() >= 2:
        return tensor.transpose(0, 1)
    if view == "offset" and tensor.dim() >= 1 and tensor.shape[0] > 1:
        return tensor[1:]
    return tensor


keys = st.text(alphabet="abcxyz._0123456789", min_size=1, max_size=6)  # no "/": flat names stay unique
plain_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=5), st.booleans(), st.none()
)
trees = st.recursive(
    st.one_of(tensor_views(), plain_values),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(keys, children, max_size=3),
    ),
    max_leaves=8,
)


@PROPERTY
@given(state=st.dictionaries(keys, trees, max_size=4))
def test_round_trip_is_tensor_exact(state: dict[str, Any]) -> None:
    data = save(state)
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "model.pt", context)
    assert metadata.checkpoint_type == "torch"
    assert_same_structure(load(rebuilt), state)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_every_dtype_scalar_empty_1d_3d(dtype: str) -> None:
    generator = torch.Generator().manual_seed(11)
    itemsize = torch.empty((), dtype=TORCH_DTYPES[dtype]).element_size()
    state = {}
    for name, shape in {"scalar": (), "empty": (0,), "empty3d": (3, 0, 2), "vector": (257,), "cube": (2, 3, 4)}.items():
        count = int(np.prod(shape, dtype=np.int64))
        raw = torch.randint(0, 256, (count * itemsize,), dtype=torch.uint8, generator=generator)
        state[name] = (raw & 1 if dtype == "BOOL" else raw).view(TORCH_DTYPES[dtype]).reshape(shape)
    with filter_context() as context:
        metadata, rebuilt = round_trip(save(state), "m.pt", context)
    assert {entry.dtype for entry in metadata.tensors.values()} == {dtype}
    assert_same_structure(load(rebuilt), state)


def test_nested_state_dict_with_plain_values() -> None:
    state = {
        "model": {
            "encoder": {"weight": torch.randn(4, 3), "bias": torch.zeros(4)},
            "head": [torch.ones(2), (torch.arange(3),)],
        },
        "optimizer": {
            "step": 1000,
            "lr": 2e-5,
            "betas": (0.9, 0.999),
            "name": "adamw",
            "fused": False,
            "foreach": None,
        },
        7: torch.tensor(3.5, dtype=torch.bfloat16),
        "epochs": [1, 2, 3],
    }
    with filter_context() as context:
        metadata, rebuilt = round_trip(save(state), "train.pt", context)
    assert list(metadata.tensors) == [
        "model/encoder/weight",
        "model/encoder/bias",
        "model/head/0",
        "model/head/1/0",
        "7",
    ]
    assert_same_structure(load(rebuilt), state)


def test_module_state_dict_and_parameters() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    state = model.state_dict()
    state["extra"] = torch.nn.Parameter(torch.randn(3))
    with filter_context() as context:
        _, rebuilt = round_trip(save(state), "model.pth", context)
    back = load(rebuilt)
    assert list(back) == list(state)
    for name, tensor in state.items():
        assert_same_structure(back[name], tensor.detach(), name)
    del back["extra"]
    copy = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    copy.load_state_dict(back)
    for (name, a), b in zip(model.state_dict().items(), copy.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_legacy_non_zip_serialization() -> None:
    state = {"w": torch.randn(3, 3, dtype=torch.float64), "i": torch.arange(5, dtype=torch.int16), "n": 3}
    data = save(state, _use_new_zipfile_serialization=False)
    assert not data.startswith(b"PK")
    with filter_context() as context:
        _, rebuilt = round_trip(data, "old.pt", context)
    assert_same_structure(load(rebuilt), state)


def test_tied_tensors_are_stored_once() -> None:
    shared = torch.randn(64, 8)
    state = OrderedDict(embed=shared, lm_head=shared, other=torch.randn(8))
    with filter_context() as context:
        metadata, rebuilt = round_trip(save(state), "tied.pt", context)
        assert metadata.tensors["embed"].oid == metadata.tensors["lm_head"].oid
        assert len(context.store.objects) == 2
    assert_same_structure(load(rebuilt), dict(state))


@pytest.mark.parametrize("lazy", ["conj", "neg"])
def test_conjugate_and_negative_views(lazy: str) -> None:
    base = torch.randn(3, dtype=torch.complex64)
    tensor = base.conj() if lazy == "conj" else base._neg_view()
    with filter_context() as context:
        _, rebuilt = round_trip(save({"c": tensor}), "m.pt", context)
    back = load(rebuilt)["c"]
    assert torch.equal(back.resolve_conj().resolve_neg(), tensor.resolve_conj().resolve_neg())


def test_colliding_flat_names_are_refused() -> None:
    # {"a/b": x, "a": {"b": y}} would need two tensors named "a/b": refuse rather than keep one of them.
    for state in ({"a/b": torch.ones(1), "a": {"b": torch.zeros(1)}}, {"1": torch.ones(1), 1: torch.zeros(1)}):
        with filter_context() as context, pytest.raises(CheckpointError) as excinfo:
            clean_bytes(save(state), LABEL, context)
        assert_one_line_error(excinfo, LABEL)


# --- bad input: nothing is ever unpickled --------------------------------------------------------------------------


def test_pickled_object_is_refused_and_never_run(tmp_path: Path) -> None:
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Evil(control)))
    assert control.exists(), "the marker mechanism itself does not work"

    marker = tmp_path / "pwned"
    data = save({"weight": torch.ones(2), "payload": Evil(marker)})
    assert not marker.exists()
    with filter_context() as context, pytest.raises(CheckpointError) as excinfo:
        clean_bytes(data, LABEL, context)
    assert_one_line_error(excinfo, LABEL)
    assert not marker.exists(), "git-theta unpickled an arbitrary object from the checkpoint"
    assert not context.store.objects


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", complex(1, 2), slice(3)], ids=["set", "bytes", "complex", "slice"])
def test_unsupported_python_values(value: object) -> None:
    with filter_context() as context, pytest.raises(CheckpointError) as excinfo:
        clean_bytes(save({"w": torch.ones(2), "v": value}), LABEL, context)
    assert_one_line_error(excinfo, LABEL)


@pytest.mark.parametrize("cut", [1, 10, 100, 600, -100, -1])
def test_truncated_file(cut: int) -> None:
    data = save({"w": torch.arange(100, dtype=torch.float32), "meta": {"step": 3}})
    with filter_context() as context, pytest.raises(CheckpointError) as excinfo:
        clean_bytes(data[:cut], LABEL, context)
    assert_one_line_error(excinfo, LABEL)


def test_an_expanded_view_larger_than_its_storage_is_refused() -> None:
    data = save({"w": torch.ones(1).expand(1 << 28)})  # 1.5 KB on disk, 1 GiB once made contiguous
    with filter_context() as context, pytest.raises(CheckpointError, match="expanded view") as excinfo:
        clean_bytes(data, LABEL, context)
    assert_one_line_error(excinfo, LABEL)


def _rezipped(data: bytes, edit: Callable[[str, bytes], bytes]) -> bytes:
    """The archive ``data`` with each record passed through ``edit`` (name, bytes), rewritten whole: CRCs agree."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, edit(info.filename, source.read(info)))
    return out.getvalue()


def test_a_storage_declared_larger_than_its_record_is_refused() -> None:
    # Tensor "a" (6 floats) is made to use the record of "b" (2 floats): loaded by mapping the file, it would take in
    # the 16 bytes that follow that record.
    data = save({"a": torch.arange(6, dtype=torch.float32), "b": torch.ones(2)})
    key = b"X\x01\x00\x00\x000"  # BINUNICODE "0", the key of a's storage
    repointed = _rezipped(data, lambda name, raw: raw.replace(key, key[:-1] + b"1", 1) if name.endswith("pkl") else raw)
    with filter_context() as context, pytest.raises(CheckpointError, match="declares 24 bytes") as excinfo:
        clean_bytes(repointed, LABEL, context)
    assert_one_line_error(excinfo, LABEL)


@pytest.mark.parametrize(
    "structure",
    [{"dict": [["w", {"tensor": "elsewhere"}]]}, {"dict": [["w"]]}, {"dict": 3}, {"list": [{}]}, [1]],
    ids=["unknown tensor", "item without value", "dict not a list", "node without kind", "node not an object"],
)
def test_smudge_refuses_a_corrupt_stored_structure(structure: object) -> None:
    with filter_context() as context:
        metadata = CheckpointMetadata.loads(clean_bytes(save({"w": torch.ones(2)}), "m.pt", context))
        metadata.format["structure"] = structure
        with pytest.raises(MetadataError, match="structure"):
            smudge_bytes(metadata.dumps(), "m.pt", context)


def test_a_record_claiming_more_than_the_file_holds_is_refused() -> None:
    data = bytearray(save({"w": torch.ones(2)}))
    central = data.find(b"PK\x01\x02")  # the directory entry of data.pkl, the first record
    data[central + 20 : central + 24] = (1 << 24).to_bytes(4, "little")  # its compressed size: 16 MiB
    with filter_context() as context, pytest.raises(CheckpointError, match="claims more bytes") as excinfo:
        clean_bytes(bytes(data), LABEL, context)
    assert_one_line_error(excinfo, LABEL)


def test_garbage_with_a_torch_extension() -> None:
    rng = np.random.default_rng(0)
    samples = [b"q\x00"] + [rng.bytes(int(rng.integers(1, 300))) for _ in range(200)]
    with filter_context() as context:
        for data in samples:
            with pytest.raises(CheckpointError) as excinfo:
                clean_bytes(data, LABEL, context)
            assert_one_line_error(excinfo, LABEL)


def test_sniff() -> None:
    assert TorchCheckpoint.sniff(save({"a": torch.ones(1)})[:4096])
    assert not TorchCheckpoint.sniff(b"")
    assert not TorchCheckpoint.sniff(b"\x80\x02" + bytes(40))
    assert TorchCheckpoint.matches_extension("x/Model.PT") and TorchCheckpoint.matches_extension("pytorch_model.bin")
