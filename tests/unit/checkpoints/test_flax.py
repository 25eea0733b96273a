"""Flax msgpack state dicts through clean and smudge: byte-identical round trips, streaming, and bad files refused."""

from __future__ import annotations

import io
import struct
from typing import Any

import ml_dtypes
import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from git_theta.checkpoints.base import CheckpointError
from git_theta.checkpoints.detect import detect
from git_theta.checkpoints.flax import FlaxCheckpoint
from git_theta.metadata import CheckpointMetadata, MetadataError
from tests.unit.support import PROPERTY, assert_one_line_error, clean_bytes, filter_context, round_trip, smudge_bytes

LABEL = "models/bad.msgpack"

#: flax/serialization.py, ``_MsgpackExtType``: the extension type codes flax writes.
NDARRAY, NATIVE_COMPLEX, NPSCALAR = 1, 2, 3


def _array_payload(array: np.ndarray) -> bytes:
    return msgpack.packb((array.shape, array.dtype.name, array.tobytes("C")), use_bin_type=True)


def _flax_ext(value: Any) -> Any:
    # The same encoding as flax.serialization's msgpack ``default`` hook.
    if isinstance(value, np.ndarray):
        return msgpack.ExtType(NDARRAY, _array_payload(value))
    if isinstance(value, np.generic):
        return msgpack.ExtType(NPSCALAR, _array_payload(np.asarray(value)))
    if isinstance(value, complex):
        return msgpack.ExtType(NATIVE_COMPLEX, msgpack.packb((value.real, value.imag)))
    raise TypeError(type(value))


def flax_bytes(tree: dict) -> bytes:
    """What ``flax.serialization.msgpack_serialize`` writes for ``tree`` (numpy leaves)."""
    return msgpack.packb(tree, default=_flax_ext, strict_types=True)


def model(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "params": {
            "Dense_0": {"kernel": rng.standard_normal((8, 4), dtype=np.float32), "bias": np.zeros(4, np.float32)},
            "LayerNorm_0": {"scale": np.ones(4, ml_dtypes.bfloat16)},
            "Embed_0": {"embedding": rng.standard_normal((5, 4)).astype(np.float16)},
        },
        "opt_state": {"0": {"count": np.asarray(7, np.int32), "mu": {"w": np.zeros((2, 2), np.float64)}}},
        "step": 12,
        "lr": np.float32(0.001),
        "note": "fine-tuned",
        "phase": 1 + 2j,
        "flags": [True, None, 2.5, b"raw"],
    }


def test_round_trip_is_byte_identical_and_names_join_keys_with_slashes() -> None:
    data = flax_bytes(model())
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "model.msgpack", context)
    assert rebuilt == data
    assert metadata.checkpoint_type == "flax"
    assert {name: (entry.dtype, entry.shape) for name, entry in metadata.tensors.items()} == {
        "params/Dense_0/kernel": ("F32", (8, 4)),
        "params/Dense_0/bias": ("F32", (4,)),
        "params/LayerNorm_0/scale": ("BF16", (4,)),
        "params/Embed_0/embedding": ("F16", (5, 4)),
        "opt_state/0/count": ("I32", ()),
        "opt_state/0/mu/w": ("F64", (2, 2)),
    }


def test_tensor_bytes_are_the_arrays_bytes() -> None:
    tree = model(3)
    format_data, tensors = FlaxCheckpoint().read(io.BytesIO(flax_bytes(tree)), "m.msgpack")
    got = {tensor.spec.name: bytes(tensor.data) for tensor in tensors}
    assert got["params/Dense_0/kernel"] == tree["params"]["Dense_0"]["kernel"].tobytes()
    assert got["params/Embed_0/embedding"] == tree["params"]["Embed_0"]["embedding"].tobytes()
    assert len(format_data["skeleton"]) == len(got) + 1


@pytest.mark.parametrize(
    "dtype",
    [np.float64, np.float32, np.float16, ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, np.int64,
     np.int32, np.int16, np.int8, np.uint64, np.uint32, np.uint16, np.uint8, np.bool_, np.complex64, np.complex128],
)  # fmt: skip
def test_every_dtype_scalar_empty_and_nd(dtype: Any) -> None:
    rng = np.random.default_rng(1)
    arrays = {}
    for name, shape in {"scalar": (), "empty": (0,), "empty3d": (2, 0, 3), "vector": (300,), "cube": (2, 3, 4)}.items():
        raw = rng.integers(0, 256, int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8)
        arrays[name] = (raw & 1 if dtype is np.bool_ else raw).view(dtype).reshape(shape)
    data = flax_bytes({"layer": arrays})
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "m.msgpack", context)
    assert rebuilt == data
    assert [entry.shape for entry in metadata.tensors.values()] == [a.shape for a in arrays.values()]


def test_a_dtype_without_a_git_theta_name_is_kept_as_raw_bytes() -> None:
    data = flax_bytes({"q": np.arange(6, dtype=np.uint8).view(ml_dtypes.int4).reshape(2, 3)})
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "m.msgpack", context)
    assert rebuilt == data
    assert (metadata.tensors["q"].dtype, metadata.tensors["q"].shape) == ("U8", (6,))


def test_large_arrays_and_non_minimal_encodings_are_kept_exactly() -> None:
    # map32/array16 headers and an ext32 array: another encoder's choices, not msgpack-python's, round trip too.
    big = np.arange(70_000, dtype=np.float32)
    payload = _array_payload(big)
    data = (
        b"\xdf\x00\x00\x00\x02"  # map32 with two entries
        + b"\xd9\x03big"  # str8 key
        + b"\xc9" + struct.pack(">I", len(payload)) + bytes([NDARRAY]) + payload
        + b"\xa4list" + b"\xdc\x00\x01" + b"\xcf" + struct.pack(">Q", 5)  # array16 holding a uint64 5
    )  # fmt: skip
    assert msgpack.unpackb(data, strict_map_key=False)["list"] == [5]
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "m.msgpack", context)
    assert rebuilt == data
    assert list(metadata.tensors) == ["big"]


def test_integer_keys_name_tensors_too() -> None:
    data = msgpack.packb({"layers": {0: np.ones(2, np.float32)}}, default=_flax_ext, strict_types=True)
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "m.msgpack", context)
    assert rebuilt == data
    assert list(metadata.tensors) == ["layers/0"]


leaves = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.booleans(),
    st.none(),
    st.builds(lambda n, seed: np.random.default_rng(seed).standard_normal(n).astype(np.float32), st.integers(0, 40),
              st.integers(0, 9)),
)  # fmt: skip
trees = st.recursive(
    leaves, lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
)


@PROPERTY
@given(tree=st.dictionaries(st.text(max_size=5), trees, max_size=4))
def test_any_state_dict_round_trips(tree: dict) -> None:
    data = flax_bytes(tree)
    with filter_context() as context:
        _, rebuilt = round_trip(data, "m.msgpack", context)
    assert rebuilt == data


def test_real_flax_writer(tmp_path: Any) -> None:
    serialization = pytest.importorskip("flax.serialization", reason="flax is optional (pip install flax)")
    import jax.numpy as jnp

    tree = {
        "params": {"kernel": jnp.arange(12, dtype=jnp.float32).reshape(3, 4), "bias": jnp.ones(4, jnp.bfloat16)},
        "step": jnp.asarray(3),
        "layers": [np.ones(2, np.int8), {"w": np.zeros((1, 2), np.float16)}],
        "lr": np.float32(0.5),
        "phase": 1 - 1j,
    }
    data = serialization.to_bytes(tree)
    with filter_context() as context:
        metadata, rebuilt = round_trip(data, "m.msgpack", context)
    assert rebuilt == data
    assert set(metadata.tensors) == {"params/kernel", "params/bias", "step", "layers/0", "layers/1/w"}
    restored = serialization.msgpack_restore(rebuilt)
    assert restored["params"]["kernel"].tolist() == np.arange(12, dtype=np.float32).reshape(3, 4).tolist()


class _Counting(io.BytesIO):
    """Remembers how far it has been read."""

    furthest = 0

    def readinto(self, buffer: Any) -> int:
        count = super().readinto(buffer)
        self.furthest = max(self.furthest, self.tell())
        return count

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.furthest = max(self.furthest, self.tell())
        return data


def test_tensors_are_streamed_one_at_a_time() -> None:
    layers = {f"layer{i}": np.full(100_000, i, np.float32) for i in range(4)}
    stream = _Counting(flax_bytes(layers))
    _, tensors = FlaxCheckpoint().read(stream, "m.msgpack")
    first = next(tensors)
    assert first.spec.name == "layer0"
    assert stream.furthest < 2 * 400_000  # the first tensor, read ahead a little, not the whole file


def test_detection_by_content_and_extension() -> None:
    data = flax_bytes(model())
    assert FlaxCheckpoint.sniff(data[:4096])
    assert detect("state.bin", data[:4096]) is FlaxCheckpoint
    no_arrays = flax_bytes({"step": 1})
    assert not FlaxCheckpoint.sniff(no_arrays)
    assert detect("state.msgpack", no_arrays) is FlaxCheckpoint
    assert not FlaxCheckpoint.sniff(b"\x88" + bytes(4000))  # a safetensors header length that looks like a map


# --- bad input -----------------------------------------------------------------------------------------------------


def _clean_error(data: bytes) -> pytest.ExceptionInfo:
    with filter_context() as context, pytest.raises(CheckpointError) as excinfo:
        clean_bytes(data, LABEL, context)
    assert_one_line_error(excinfo, LABEL)
    return excinfo


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.3, 0.5, 0.9, 0.999])
def test_truncated_file(fraction: float) -> None:
    data = flax_bytes(model())
    excinfo = _clean_error(data[: int(len(data) * fraction)])
    assert "truncated" in str(excinfo.value)


def _ext(payload: bytes) -> bytes:
    return b"\xc9" + struct.pack(">I", len(payload)) + bytes([NDARRAY]) + payload


CORRUPT = {
    "top level not a map": msgpack.packb([1, 2]),
    "never-used byte 0xc1": b"\x81\xa1a\xc1",
    "map key that is a map": b"\x81\x80\x01",
    "array payload not a triple": b"\x81\xa1a" + _ext(msgpack.packb([[1], "float32"])),
    "array shape not a list": b"\x81\xa1a" + _ext(msgpack.packb([1, "float32", b"abcd"])),
    "negative dimension": b"\x81\xa1a" + _ext(msgpack.packb([[-1], "float32", b""])),
    "data size does not match the shape": b"\x81\xa1a" + _ext(msgpack.packb([[2], "float32", b"abcd"])),
    "extension longer than the array": b"\x81\xa1a" + _ext(msgpack.packb([[1], "float32", b"abcd"]) + b"xx"),
    "trailing garbage": flax_bytes(model()) + b"garbage",
    "nested too deep": b"\x81\xa1a" * 150 + b"\x01",
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_file(case: str) -> None:
    _clean_error(CORRUPT[case])


@pytest.mark.parametrize(
    "claim",
    [b"\x81\xa1a\xc6\xff\xff\xff\xff", b"\x81\xdb\xff\xff\xff\xf0", b"\x81\xa1a\xc9\xff\xff\xff\xf0\x05"],
    ids=["bin32", "str32 key", "ext32"],
)
def test_huge_declared_sizes_fail_at_the_end_of_the_file(claim: bytes) -> None:
    excinfo = _clean_error(claim + bytes(100))
    assert "truncated" in str(excinfo.value) or "key of" in str(excinfo.value)


def test_smudge_refuses_a_skeleton_that_does_not_match_the_tensor_list() -> None:
    with filter_context() as context:
        metadata = CheckpointMetadata.loads(clean_bytes(flax_bytes(model()), "m.msgpack", context))
        renamed = {("x" if name == "params/Dense_0/bias" else name): e for name, e in metadata.tensors.items()}
        tampered = CheckpointMetadata(metadata.checkpoint_type, renamed, metadata.format)
        with pytest.raises(MetadataError):
            smudge_bytes(tampered.dumps(), "m.msgpack", context)
        broken = CheckpointMetadata(metadata.checkpoint_type, metadata.tensors, {"skeleton": ["\x81"]})
        with pytest.raises(MetadataError):
            smudge_bytes(broken.dumps(), "m.msgpack", context)


# --- merges --------------------------------------------------------------------------------------------------------


def test_rebuild_format_for_a_merge_that_reshapes_and_recasts() -> None:
    tree = model(5)
    format_data, read = FlaxCheckpoint().read(io.BytesIO(flax_bytes(tree)), "m.msgpack")
    old_specs = [tensor.spec for tensor in read]
    merged = model(5)
    merged["params"]["Embed_0"]["embedding"] = np.ones((300, 4), np.float16)  # a bigger vocabulary: ext8 -> ext16
    merged["params"]["Dense_0"]["bias"] = np.zeros(4, np.float64)
    merged["opt_state"]["0"]["count"] = np.asarray(7, np.int64)
    expected = flax_bytes(merged)
    _, read = FlaxCheckpoint().read(io.BytesIO(expected), "m.msgpack")
    new_tensors = list(read)

    new_format, order = FlaxCheckpoint.rebuild_format(format_data, old_specs, [t.spec for t in new_tensors])
    out = io.BytesIO()
    FlaxCheckpoint().write(new_format, order, [t.data for t in new_tensors], out)
    assert out.getvalue() == expected  # what flax itself would have written for the merged state


def test_rebuild_format_refuses_new_keys_and_reshaping_raw_dtypes() -> None:
    tree = {"a": np.ones(2, np.float32), "q": np.zeros(4, np.uint8).view(ml_dtypes.int4)}
    format_data, read = FlaxCheckpoint().read(io.BytesIO(flax_bytes(tree)), "m.msgpack")
    specs = [tensor.spec for tensor in read]
    with pytest.raises(CheckpointError, match="ours or theirs"):
        FlaxCheckpoint.rebuild_format(format_data, specs, [*specs, specs[0]._replace(name="b")])
    with pytest.raises(CheckpointError, match="int4"):
        FlaxCheckpoint.rebuild_format(format_data, specs, [specs[0], specs[1]._replace(shape=(8,))])
    assert FlaxCheckpoint.rebuild_format(format_data, specs, specs) == (format_data, specs)
