"""Shared pieces of the unit tests that use torch: its dtypes, exact tensor comparison, tensor strategies."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from tests.needs import TORCH, needs_module
from tests.unit.support import raw_data, shapes

torch = needs_module("torch", TORCH)

#: git-theta dtype name -> torch dtype, for every dtype git-theta supports.
TORCH_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "F8_E8M0": torch.float8_e8m0fnu,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "C64": torch.complex64,
    "C128": torch.complex128,
}
#: What the safetensors library can write (it has no complex128).
SAFETENSORS_DTYPES = [name for name in TORCH_DTYPES if name != "C128"]
# --- exact tensors ---------------------------------------------------------------------------------------------


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The exact bytes of a tensor in C order (NaN payloads included)."""
    flat = tensor.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def torch_tensor(dtype: str, shape: tuple[int, ...], data: bytes) -> torch.Tensor:
    """A torch tensor of ``dtype`` and ``shape`` holding exactly ``data``."""
    if not data:
        return torch.empty(shape, dtype=TORCH_DTYPES[dtype])
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(TORCH_DTYPES[dtype]).reshape(shape)


def assert_same_tensor(actual: torch.Tensor, expected: torch.Tensor, where: str = "") -> None:
    """Same dtype, shape and bit pattern."""
    assert isinstance(actual, torch.Tensor), f"{where}: {type(actual).__name__} is not a tensor"
    assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{where}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    )
    assert tensor_bytes(actual) == tensor_bytes(expected), f"{where}: bytes differ"


def assert_same_structure(actual: Any, expected: Any, where: str = "top") -> None:
    """Same nesting, container types, keys in order, plain values and exact tensors."""
    if isinstance(expected, torch.Tensor):
        assert_same_tensor(actual, expected, where)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {type(actual).__name__} is not a dict"
        assert list(actual) == list(expected), f"{where}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same_structure(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert type(actual) is type(expected), f"{where}: {type(actual).__name__} != {type(expected).__name__}"
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_structure(a, e, f"{where}/{i}")
    else:
        assert type(actual) is type(expected) and repr(actual) == repr(expected), f"{where}: {actual!r} != {expected!r}"


@st.composite
def torch_tensors(draw: st.DrawFn, dtypes: list[str]) -> torch.Tensor:
    """A tensor of one of ``dtypes``, any shape, any bit pattern."""
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(shapes)
    count = int(np.prod(shape, dtype=np.int64))
    itemsize = torch.empty((), dtype=TORCH_DTYPES[dtype]).element_size()
    return torch_tensor(dtype, shape, draw(raw_data(count * itemsize, dtype)))
