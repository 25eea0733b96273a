"""The clean filter applies the updates ``git theta add`` planned for its own checkpoint, and only those."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load, save

from git_theta.metadata import CheckpointMetadata
from git_theta.session.context import UPDATE_TYPE_ENV
from git_theta.updates.base import Payload, TensorUpdate, UpdateError
from git_theta.updates.requests import UPDATE_REQUEST_ENV, write_request
from tests.unit.support import clean_bytes, filter_context, smudge_bytes

RNG = np.random.default_rng(0)
LEFT, RIGHT = RNG.standard_normal((6, 2)).astype(np.float32), RNG.standard_normal((2, 5)).astype(np.float32)
LOW_RANK = Payload({"R": LEFT, "C": RIGHT}, {"scale": 0.5})


def expected(base: np.ndarray) -> np.ndarray:
    return (base.astype(np.float64) + 0.5 * LEFT.astype(np.float64) @ RIGHT.astype(np.float64)).astype(np.float32)


@pytest.fixture
def requested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a request of ``plan`` and point the filter at it."""

    def write(plan: dict) -> None:
        write_request(tmp_path, plan)
        monkeypatch.setenv(UPDATE_TYPE_ENV, "low-rank")
        monkeypatch.setenv(UPDATE_REQUEST_ENV, str(tmp_path))

    return write


def test_each_checkpoint_gets_its_own_updates(requested) -> None:
    first, second = {"w": RNG.standard_normal((6, 5)).astype(np.float32)}, {"v": np.ones((6, 5), np.float32)}
    requested({"a.safetensors": {"w": TensorUpdate("low-rank", LOW_RANK)}, "b.safetensors": {}})
    with filter_context() as context:
        metadata = clean_bytes(save(first), "a.safetensors", context)
        assert CheckpointMetadata.loads(metadata).tensors["w"].update == "low-rank"
        np.testing.assert_array_equal(load(smudge_bytes(metadata, "a.safetensors", context))["w"], expected(first["w"]))
        untouched = clean_bytes(save(second), "b.safetensors", context)
        assert load(smudge_bytes(untouched, "b.safetensors", context))["v"].tobytes() == second["v"].tobytes()


def test_an_update_with_its_own_base_value_stores_that_value_first(requested) -> None:
    old, saved = RNG.standard_normal((6, 5)).astype(np.float32), RNG.standard_normal((6, 5)).astype(np.float32)
    requested({"a.safetensors": {"w": TensorUpdate("low-rank", LOW_RANK, saved)}})
    with filter_context() as context:
        metadata = clean_bytes(save({"w": old}), "a.safetensors", context)
        entry = CheckpointMetadata.loads(metadata).tensors["w"]
        assert entry.update == "low-rank"
        rebuilt = load(smudge_bytes(metadata, "a.safetensors", context))["w"]
        np.testing.assert_array_equal(rebuilt, expected(saved))  # on the saved value, not on the file's


def test_an_update_whose_tensor_is_gone_fails_naming_the_file(requested) -> None:
    requested({"a.safetensors": {"gone": TensorUpdate("low-rank", LOW_RANK)}})
    with filter_context() as context, pytest.raises(UpdateError, match=r"^a.safetensors: 1 tensor\(s\) to update"):
        clean_bytes(save({"w": np.ones((6, 5), np.float32)}), "a.safetensors", context)
