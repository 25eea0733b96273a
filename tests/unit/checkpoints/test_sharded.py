"""Reading the index json of a sharded checkpoint: its shard files, beside it, in order; bad indexes say why."""

from __future__ import annotations

import json

import pytest

from git_theta.checkpoints.sharded import ShardIndexError, is_index, shard_paths


def index(weight_map: object) -> bytes:
    return json.dumps({"metadata": {"total_size": 8}, "weight_map": weight_map}).encode()


def test_shards_are_the_files_of_the_weight_map_beside_the_index() -> None:
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    data = index({"b": second, "a": first, "c": second})
    assert shard_paths("llm/model.safetensors.index.json", data) == [
        "llm/model-00001-of-00002.safetensors",
        "llm/model-00002-of-00002.safetensors",
    ]
    assert shard_paths("model.safetensors.index.json", index({"a": "./m.safetensors"})) == ["m.safetensors"]
    assert is_index("x/pytorch_model.bin.index.json") and not is_index("x/config.json")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not a sharded checkpoint index"),
        (b"[1, 2]", "not a sharded checkpoint index"),
        (index(None), "no 'weight_map' of tensor -> file"),
        (index({"a": 3}), "no 'weight_map' of tensor -> file"),
        (index({"a": "../other/m.safetensors"}), "names a file outside its directory"),
        (index({"a": "/etc/m.safetensors"}), "names a file outside its directory"),
    ],
)
def test_a_bad_index_is_one_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ShardIndexError, match=message) as raised:
        shard_paths("m/model.safetensors.index.json", data)
    assert str(raised.value).startswith("m/model.safetensors.index.json: ") and "\n" not in str(raised.value)
