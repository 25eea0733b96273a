"""LiNeS and fine-tuning transfer, shared by the task-vector strategies, against float64 references (docs/merges.md)."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.diffs.plot import layer_of
from git_theta.merges.base import MergeError, load_strategy
from git_theta.merges.choose import Chooser, parse_pattern
from git_theta.merges.engine import merge_metadata
from git_theta.merges.lines import block_count, block_of, lines_scale
from tests.unit.merges.test_engine import MemoryTensors, checkpoint

RNG = np.random.default_rng(15)
NAMES = ["embed.weight", "layers.0.w", "layers.1.w", "layers.2.w", "layers.3.w", "head.weight"]


def model(scale: float = 1.0) -> dict[str, np.ndarray]:
    return {name: (scale * RNG.standard_normal((4, 6))).astype(np.float32) for name in NAMES}


def wide(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float64)


def merge(io, base, sides, spec, patterns=(), transfer=False):
    chooser = Chooser(load_strategy(spec), [parse_pattern(p) for p in patterns])
    outcome = merge_metadata("m.npz", base, sides, chooser, io, transfer=transfer)
    assert outcome.metadata is not None, outcome.unresolved
    return {name: io.value(entry) for name, entry in outcome.metadata.tensors.items()}, outcome


def test_blocks_are_found_as_plot_by_layer_groups_them() -> None:
    names = ["encoder.layer.3.attention.self.query.weight", "h.11.mlp/c_fc", "model/layers/0/w", "wte", "a.b2.c"]
    assert [block_of(name) for name in names] == [3, 11, 0, None, None]
    for name in names:
        if block_of(name) is not None:
            assert layer_of(name).split(".")[-1] == str(block_of(name))
    assert block_count(NAMES) == 4 and block_count(["wte"]) is None


def test_lines_scale_is_alpha_plus_beta_times_depth() -> None:
    assert lines_scale((0.2, 0.8), "layers.0.w", 4) == 0.2
    assert lines_scale((0.2, 0.8), "layers.3.w", 4) == 0.2 + 0.8 * 3 / 3
    assert lines_scale((0.2, 0.8), "layers.2.w", 4) == 0.2 + 0.8 * 2 / 3
    assert lines_scale((0.2, 0.8), "embed.weight", 4) == 0.2  # outside numbered blocks: alpha
    assert lines_scale((0.5, 1.0), "layers.0.w", 1) == 0.5
    with pytest.raises(MergeError, match="is in block 3 but the model has 2"):
        lines_scale((0.2, 0.8), "layers.3.w", 2)


@pytest.mark.parametrize("spec", ["task-arithmetic:lambda=0.7", "ties:density=1,lambda=0.7"])
def test_lines_scales_every_block_of_the_merged_task_vector(spec: str) -> None:
    io = MemoryTensors()
    base, a, b = model(), model(), model()
    a = {name: base[name] + 0.1 * value for name, value in a.items()}
    b = {name: base[name] + 0.1 * value for name, value in b.items()}
    b["head.weight"] = base["head.weight"]  # only one side changed it: LiNeS merges it anyway
    got, outcome = merge(io, checkpoint(io, base), [checkpoint(io, a), checkpoint(io, b)], spec + ",lines=0.1/0.9")
    assert sum(outcome.merged.values()) == len(NAMES)
    for name in NAMES:
        block = block_of(name)
        scale = 0.1 if block is None else 0.1 + 0.9 * block / 3
        taus = [wide(a[name]) - wide(base[name]), wide(b[name]) - wide(base[name])]
        if spec.startswith("ties"):  # density 1: the disjoint mean of the changes that agree with the elected sign
            elected = np.sign(taus[0] + taus[1])
            agree = [np.where((np.sign(t) == elected) & (t != 0), t, 0) for t in taus]
            count = sum((np.sign(t) == elected) & (t != 0) for t in taus)
            delta = 0.7 * np.divide(sum(agree), count, out=np.zeros_like(taus[0]), where=count > 0)
            np.testing.assert_allclose(got[name], base[name] + scale * delta, rtol=1e-6, atol=1e-6)
        else:
            expected = (wide(base[name]) + scale * (0.7 * (taus[0] + taus[1]))).astype(np.float32)
            assert np.array_equal(got[name], expected), name


def test_lines_with_one_fine_tune_is_the_post_training_edit() -> None:
    io = MemoryTensors()
    base = model()
    tuned = {name: base[name] + 0.05 * value for name, value in model().items()}
    got, _ = merge(io, checkpoint(io, base), [checkpoint(io, base), checkpoint(io, tuned)], "task-arithmetic:lines=0/1")
    for name in NAMES:
        block = block_of(name)
        scale = 0.0 if block is None else block / 3
        expected = (wide(base[name]) + scale * (wide(tuned[name]) - wide(base[name]))).astype(np.float32)
        assert np.array_equal(got[name], expected), name


def test_layers_option_overrides_the_block_count_of_the_file() -> None:
    io = MemoryTensors()
    base = model()
    tuned = {name: base[name] + 1 for name in NAMES}
    spec = "task-arithmetic:lines=0/1,layers=7"
    got, _ = merge(io, checkpoint(io, base), [checkpoint(io, base), checkpoint(io, tuned)], spec)
    tau = wide(tuned["layers.3.w"]) - wide(base["layers.3.w"])
    assert np.array_equal(got["layers.3.w"], (wide(base["layers.3.w"]) + 3 / 6 * tau).astype(np.float32))
    assert load_strategy(spec).describe() == "task-arithmetic:lambda=1.0,lines=0/1,layers=7"
    with pytest.raises(MergeError, match="lines='0.5' must be ALPHA/BETA"):
        load_strategy("ties:lines=0.5")
    with pytest.raises(MergeError, match="has no option 'lines'"):
        load_strategy("average:lines=0/1")


def transfer_reference(new: np.ndarray, old: np.ndarray, tuned: np.ndarray, lam: float) -> np.ndarray:
    """Fine-tuning transfer (Lin et al., 2025): new base + lambda * (fine-tuned - old base), rounded once."""
    return (wide(new) + lam * (wide(tuned) - wide(old))).astype(np.float32)


def test_a_pick_scales_only_the_transferred_change() -> None:
    io = MemoryTensors()
    old, new = model(), model()
    tuned = {name: old[name] + 0.3 * value for name, value in model().items()}
    new["head.weight"] = old["head.weight"]  # the new base left it: only the fine-tune changed it
    tuned["embed.weight"] = old["embed.weight"]  # the fine-tune left it: the new base's version stays
    sides = [checkpoint(io, new), checkpoint(io, tuned)]
    got, _ = merge(io, checkpoint(io, old), sides, "task-arithmetic:lambda=0.8", transfer=True)
    for name in NAMES:
        assert np.array_equal(got[name], transfer_reference(new[name], old[name], tuned[name], 0.8)), name
    three_way, _ = merge(io, checkpoint(io, old), sides, "task-arithmetic:lambda=0.8")
    assert not np.array_equal(three_way["layers.0.w"], got["layers.0.w"])  # a merge scales both changes
    assert np.array_equal(three_way["head.weight"], tuned["head.weight"])  # and takes a lone change whole


def test_a_pick_with_lambda_one_takes_lone_changes_without_decoding() -> None:
    io = MemoryTensors()
    old = model()
    tuned = {**old, "layers.0.w": old["layers.0.w"] + 1}
    new = {**old, "layers.1.w": old["layers.1.w"] - 1}
    outcome = merge_metadata(
        "m.npz",
        checkpoint(io, old),
        [checkpoint(io, new), checkpoint(io, tuned)],
        Chooser(load_strategy("task-arithmetic")),
        io,
        transfer=True,
    )
    assert io.loaded == [] and not outcome.merged


def test_ties_in_a_pick_trims_the_picked_change_alone() -> None:
    io = MemoryTensors()
    old, new = model(), model()
    tuned = {name: old[name] + value for name, value in model().items()}
    got, _ = merge(
        io, checkpoint(io, old), [checkpoint(io, new), checkpoint(io, tuned)], "ties:density=0.25", transfer=True
    )
    for name in NAMES:
        tau = wide(tuned[name]) - wide(old[name])
        keep = np.argsort(-np.abs(tau.ravel()), kind="stable")[:6]  # ceil(0.25 * 24)
        trimmed = np.zeros(tau.size)
        trimmed[keep] = tau.ravel()[keep]
        expected = new[name] + trimmed.reshape(tau.shape).astype(np.float32)
        np.testing.assert_allclose(got[name], expected, rtol=1e-6, atol=1e-6)
