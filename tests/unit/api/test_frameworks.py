"""Exact bytes to numpy arrays and torch tensors, for every dtype git-theta stores."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.api.frameworks import FRAMEWORK_NAME, check_framework, convert, numpy_dtype
from git_theta.dtypes import ITEMSIZE
from git_theta.errors import UsageError


@pytest.mark.parametrize("dtype", sorted(ITEMSIZE))
def test_numpy_views_the_exact_bytes_with_the_whole_element_type(dtype: str) -> None:
    data = memoryview(bytearray(range(ITEMSIZE[dtype] * 6)))
    if dtype == "BOOL":
        data = memoryview(bytearray([0, 1] * 3))
    array = convert(data, dtype, (2, 3), "numpy")
    assert array.shape == (2, 3) and array.dtype.itemsize == ITEMSIZE[dtype]
    assert array.dtype == numpy_dtype(dtype) and array.tobytes() == bytes(data)
    assert array.dtype.name == FRAMEWORK_NAME[dtype]


@pytest.mark.parametrize("dtype", sorted(ITEMSIZE))
def test_torch_tensors_hold_the_same_bytes(dtype: str) -> None:
    torch = pytest.importorskip("torch")
    name = FRAMEWORK_NAME[dtype]
    if not isinstance(getattr(torch, name, None), torch.dtype):
        pytest.skip(f"this torch has no {name}")
    data = bytes([0, 1] * 3) if dtype == "BOOL" else bytes(range(ITEMSIZE[dtype] * 6))
    tensor = convert(memoryview(data), dtype, (3, 2), "torch")  # read-only bytes: copied
    assert tensor.dtype == getattr(torch, name) and tuple(tensor.shape) == (3, 2)
    assert tensor.contiguous().view(torch.uint8).numpy().tobytes() == data
    assert convert(memoryview(b""), dtype, (0, 4), "torch").shape == (0, 4)


def test_empty_tensors_and_unknown_frameworks() -> None:
    assert convert(memoryview(b""), "F32", (0, 3), "numpy").shape == (0, 3)
    assert convert(memoryview(np.float32(2).tobytes()), "F32", (), "numpy") == np.float32(2)
    with pytest.raises(UsageError, match="unknown framework 'jax' \\(choose one of: numpy, torch\\)"):
        check_framework("jax")
