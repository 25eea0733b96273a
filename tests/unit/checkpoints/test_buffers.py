"""The pool of large tensor buffers: a buffer is filled again only when nothing else refers to it."""

from __future__ import annotations

import io

import pytest

from git_theta.checkpoints.base import Tensor, TensorSpec, Truncated, read_exact
from git_theta.checkpoints.buffers import LIMIT, MIN_SIZE, POOL, BufferPool

SPEC = TensorSpec("w", "U8", (MIN_SIZE,))


def test_an_unshared_buffer_is_handed_out_again() -> None:
    pool = BufferPool()
    buffer = bytearray(MIN_SIZE)
    address = id(buffer)
    tensor = Tensor(SPEC, buffer)
    del buffer
    pool.give_back(tensor)
    del tensor
    taken = pool.take(MIN_SIZE)
    assert taken is not None and id(taken) == address
    assert pool.take(MIN_SIZE) is None  # handed out once


@pytest.mark.parametrize("keep", ["reference", "view"])
def test_a_buffer_referred_to_elsewhere_is_left_alone(keep: str) -> None:
    pool = BufferPool()
    tensor = Tensor(SPEC, bytearray(MIN_SIZE))
    kept = tensor.data if keep == "reference" else memoryview(tensor.data)[:10]
    pool.give_back(tensor)
    assert pool.take(MIN_SIZE) is None
    assert len(kept) > 0


def test_small_buffers_other_types_and_excess_are_not_kept() -> None:
    pool = BufferPool(limit=MIN_SIZE)
    pool.give_back(Tensor(SPEC, bytearray(MIN_SIZE - 1)))
    pool.give_back(Tensor(SPEC, bytes(MIN_SIZE)))
    assert pool.take(MIN_SIZE - 1) is None and pool.take(MIN_SIZE) is None
    pool.give_back(Tensor(SPEC, bytearray(MIN_SIZE)))
    pool.give_back(Tensor(SPEC, bytearray(MIN_SIZE)))  # over the limit
    assert pool.take(MIN_SIZE) is not None and pool.take(MIN_SIZE) is None
    pool.give_back(Tensor(SPEC, bytearray(MIN_SIZE)))
    pool.clear()
    assert pool.take(MIN_SIZE) is None
    assert LIMIT >= 2 * 64 << 20  # two of the largest tensors of a typical checkpoint


def test_read_exact_fills_a_spare_buffer_and_still_refuses_a_short_stream() -> None:
    size = 2 * MIN_SIZE
    POOL.give_back(Tensor(SPEC, bytearray(b"\xff" * size)))
    data = bytes(range(256)) * (size // 256)
    try:
        filled = read_exact(io.BytesIO(data), size, "file", "tensor")
        assert filled == data
        assert POOL.take(size) is None  # the spare was used
        POOL.give_back(Tensor(SPEC, bytearray(size)))
        with pytest.raises(Truncated, match="1 of 2097152 bytes"):
            read_exact(io.BytesIO(b"x"), size, "file", "tensor")
        assert POOL.take(size) is None  # the spare was used
    finally:
        POOL.clear()


def test_a_tensor_read_by_the_safetensors_plugin_can_be_given_back_while_the_next_is_read() -> None:
    # The reader yields a tensor, then reads the next one while the filter stores the first: the generator must not
    # keep a reference to the bytes it yielded, or no buffer is ever taken back.
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save

    from git_theta.checkpoints.safetensors import SafetensorsCheckpoint

    size = MIN_SIZE // 4
    data = save({f"w{i}": np.full(size, i, dtype=np.float32) for i in range(3)})
    _, tensors = SafetensorsCheckpoint().read(io.BytesIO(data), "model.safetensors")
    pool = BufferPool()
    first = next(tensors)
    pool.give_back(first)
    del first
    second = next(tensors)
    assert pool.take(len(second.data)) is not None  # the first tensor's buffer, for the second's bytes
    assert len(list(tensors)) == 1
