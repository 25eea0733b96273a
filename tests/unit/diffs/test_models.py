"""Grouping the checkpoints of a comparison: each index's shards as one model, the other files alone."""

from __future__ import annotations

import hashlib

from git_theta.diffs.compare import Item, Side, diff_sides
from git_theta.diffs.models import Unit, combined, group
from git_theta.diffs.result import Layout

INDEX = "m/model.safetensors.index.json"


def tracked(paths: list[str]) -> list[str]:
    return [path for path in paths if path.endswith(".safetensors")]


def test_shards_of_an_index_on_either_side_make_one_model() -> None:
    shards = {
        (INDEX, 0): ["m/model-00001-of-00002.safetensors", "m/model-00002-of-00002.safetensors"],
        (INDEX, 1): ["m/model-00001-of-00001.safetensors"],
    }
    listed = [INDEX, *shards[INDEX, 0], *shards[INDEX, 1], "m/config.json", "other.safetensors"]
    units = group(listed, lambda index, side: shards.get((index, side)), tracked)
    assert units == [
        Unit(INDEX, tuple(shards[INDEX, 0]), tuple(shards[INDEX, 1])),
        Unit("other.safetensors", ("other.safetensors",), ("other.safetensors",)),
    ]
    assert units[0].sharded and not units[1].sharded


def test_an_index_of_untracked_files_is_no_model() -> None:
    units = group([INDEX, "m/pytorch_model.bin"], lambda index, side: ["m/pytorch_model.bin"], tracked)
    assert units == []  # a model whose shards git-theta does not track is not ours to report


def item(name: str, value: bytes) -> Item:
    digest = "sha256:" + hashlib.sha256(value).hexdigest()
    return Item(name, Layout("U8", (len(value),)), digest, lambda: memoryview(value))


def test_tensors_moved_between_shards_are_no_change() -> None:
    old = combined([Side([item("a", b"1"), item("b", b"2")]), Side([item("c", b"3")])])
    new = combined([Side([item("c", b"3"), item("a", b"1")]), Side([item("b", b"9")])])
    diff = diff_sides(INDEX, old, new)
    assert [t.name for t in diff.tensors] == ["b"] and diff.unchanged == 2
    assert combined([]).items == []
