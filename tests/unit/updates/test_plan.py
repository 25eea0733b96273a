"""Updates are matched to the tensors of every checkpoint added together: one shard each, never two, never none."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.checkpoints.base import TensorSpec
from git_theta.updates.base import Payload, TensorUpdate, UpdateError, Updates
from git_theta.updates.plan import plan_updates

SHARDS = {
    "model-00001-of-00002.safetensors": [
        TensorSpec("model.embed.weight", "F32", (10, 4)),
        TensorSpec("model.layers.0.q.weight", "F32", (4, 4)),
    ],
    "model-00002-of-00002.safetensors": [
        TensorSpec("model.layers.0.q.bias", "F32", (4,)),
        TensorSpec("model.layers.1.q.weight", "F32", (4, 4)),
    ],
}


def low_rank(rows: int = 4, columns: int = 4) -> TensorUpdate:
    return TensorUpdate("low-rank", Payload({"R": np.ones((rows, 1)), "C": np.ones((1, columns))}, {"scale": 1.0}))


def scaling(size: int = 4) -> TensorUpdate:
    return TensorUpdate("ia3", Payload({"ia3": np.ones(size)}, {}))


def test_each_shard_gets_the_updates_of_its_own_tensors() -> None:
    updates = Updates(
        {"layers.0.q.weight": low_rank(), "layers.1.q.weight": low_rank()},
        {"layers.0.q.bias": scaling(), "layers.1.q.bias": scaling()},  # the second module has no bias
    )
    plan = plan_updates(updates, SHARDS, "adapter")
    assert {path: sorted(tensors) for path, tensors in plan.items()} == {
        "model-00001-of-00002.safetensors": ["model.layers.0.q.weight"],
        "model-00002-of-00002.safetensors": ["model.layers.0.q.bias", "model.layers.1.q.weight"],
    }


def test_an_update_that_matches_no_shard_fails_naming_it() -> None:
    updates = Updates({"layers.0.q.weight": low_rank(), "layers.7.q.weight": low_rank()}, {})
    with pytest.raises(UpdateError, match=r"adapter: 1 update\(s\) match no tensor of the 2 checkpoints added .*"):
        plan_updates(updates, SHARDS, "adapter")
    one = {"model-00001-of-00002.safetensors": SHARDS["model-00001-of-00002.safetensors"]}
    with pytest.raises(UpdateError, match=r"add all its shards together \(or their directory\)"):
        plan_updates(Updates({"layers.1.q.weight": low_rank()}, {}), one, "adapter")


def test_ambiguous_and_misfitting_updates_fail() -> None:
    with pytest.raises(UpdateError, match=r"the update of 'q.weight' matches both"):
        plan_updates(Updates({"q.weight": low_rank()}, {}), SHARDS, "adapter")
    with pytest.raises(UpdateError, match=r"does not fit tensor 'model.layers.0.q.weight'"):
        plan_updates(Updates({"layers.0.q.weight": low_rank(rows=5)}, {}), SHARDS, "adapter")
    with pytest.raises(UpdateError, match=r"two updates match tensor 'model.layers.0.q.weight'"):
        plan_updates(Updates({"layers.0.q.weight": low_rank(), "model.layers.0.q.weight": low_rank()}, {}), SHARDS, "a")


def test_a_longer_update_name_matches_a_shorter_tensor_name() -> None:
    plan = plan_updates(Updates({"base.model.layers.1.q.weight": low_rank()}, {}), SHARDS, "adapter")
    assert list(plan["model-00002-of-00002.safetensors"]) == ["model.layers.1.q.weight"]
