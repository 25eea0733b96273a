"""Each merge strategy against an independent numpy computation of its published definition (docs/merges.md)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from git_theta import plugins
from git_theta.merges.base import MergeError, load_strategy, parse_spec

RNG = np.random.default_rng(1234)
BASE = RNG.standard_normal((8, 16))
MODELS = [BASE + RNG.standard_normal((8, 16)) for _ in range(3)]
WEIGHTS = [1.0, 2.0, 0.5]


def run(spec: str, models: list[np.ndarray], weights: list[float] | None = None, base: np.ndarray = BASE) -> np.ndarray:
    strategy = load_strategy(spec)
    weights = weights or strategy.weights or [1.0] * len(models)
    return strategy.merge(base, models, weights, "layer.weight")


def test_every_builtin_strategy_is_registered() -> None:
    expected = {"ours", "theirs", "base", "average", "task-arithmetic", "ties", "dare", "slerp", "breadcrumbs"}
    expected |= {"breadcrumbs-ties", "model-stock", "uniform-soup"}
    assert expected <= set(plugins.names(plugins.MERGES))


def test_selection_strategies() -> None:
    assert run("ours", MODELS) is MODELS[0]
    assert run("theirs", MODELS) is MODELS[-1]
    assert run("base", MODELS) is BASE


def test_average_is_the_weighted_mean() -> None:
    np.testing.assert_allclose(run("average", MODELS), np.mean(MODELS, axis=0))
    np.testing.assert_allclose(run("average", MODELS, WEIGHTS), np.average(MODELS, axis=0, weights=WEIGHTS))
    np.testing.assert_allclose(run("average:weights=3/1", MODELS[:2]), 0.75 * MODELS[0] + 0.25 * MODELS[1])


def test_task_arithmetic_adds_the_changes() -> None:
    taus = np.stack(MODELS) - BASE
    np.testing.assert_allclose(run("task-arithmetic", MODELS), BASE + taus.sum(axis=0))
    np.testing.assert_allclose(run("task-arithmetic:lambda=0.3", MODELS), BASE + 0.3 * taus.sum(axis=0))
    weighted = np.tensordot(WEIGHTS, taus, axes=1)
    np.testing.assert_allclose(run("task-arithmetic:lambda=0.5", MODELS, WEIGHTS), BASE + 0.5 * weighted)
    # Three-way with lambda = 1: ours + theirs - base (fine-tuning transfer).
    np.testing.assert_allclose(run("task-arithmetic", MODELS[:2]), MODELS[0] + MODELS[1] - BASE)


def ties_reference(base: np.ndarray, models: list[np.ndarray], density: float, lam: float, weights) -> np.ndarray:
    """TIES as the paper states it, written independently: top-k by sorting, sign election, disjoint mean."""
    trimmed = []
    for model in models:
        tau = (model - base).ravel()
        k = math.ceil(density * tau.size)
        keep = np.zeros(tau.size, bool)
        keep[np.argsort(-np.abs(tau), kind="stable")[:k]] = True
        trimmed.append(np.where(keep, tau, 0.0))
    trimmed = np.stack(trimmed)
    w = np.asarray(weights)[:, None]
    elected = np.sign((w * trimmed).sum(axis=0))
    merged = np.zeros(base.size)
    for j in range(base.size):
        agree = [i for i in range(len(models)) if trimmed[i, j] != 0 and np.sign(trimmed[i, j]) == elected[j]]
        if agree:
            merged[j] = sum(weights[i] * trimmed[i, j] for i in agree) / sum(weights[i] for i in agree)
    return base + lam * merged.reshape(base.shape)


@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
def test_ties_trims_elects_and_averages(density: float) -> None:
    got = run(f"ties:density={density},lambda=0.7", MODELS)
    np.testing.assert_allclose(got, ties_reference(BASE, MODELS, density, 0.7, [1, 1, 1]))
    weighted = run(f"ties:density={density}", MODELS, WEIGHTS)
    np.testing.assert_allclose(weighted, ties_reference(BASE, MODELS, density, 1.0, WEIGHTS))


def test_ties_keeps_about_density_of_each_change() -> None:
    got = run("ties:density=0.25", MODELS[:1])
    assert np.count_nonzero(got != BASE) == math.ceil(0.25 * BASE.size)


def dare_reference(models, drop, seed, lam, name="layer.weight") -> np.ndarray:
    total = np.zeros_like(BASE)
    for i, model in enumerate(models):
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
        draws = np.random.Generator(np.random.PCG64([seed, key, i])).random(BASE.size).reshape(BASE.shape)
        total += np.where(draws < drop, 0.0, (model - BASE) / (1 - drop))
    return BASE + lam * total


def test_dare_drops_and_rescales_with_a_seed() -> None:
    got = run("dare:drop=0.6,seed=7,lambda=0.5", MODELS)
    np.testing.assert_allclose(got, dare_reference(MODELS, 0.6, 7, 0.5))
    assert np.array_equal(got, run("dare:drop=0.6,seed=7,lambda=0.5", MODELS))  # reproducible
    assert not np.array_equal(got, run("dare:drop=0.6,seed=8,lambda=0.5", MODELS))
    np.testing.assert_allclose(run("dare:drop=0", MODELS), run("task-arithmetic", MODELS))


def test_dare_then_ties_elects_signs_of_the_rescaled_changes() -> None:
    got = run("dare:drop=0.5,seed=3,then=ties", MODELS)
    dropped = []
    for i, model in enumerate(MODELS):
        key = int.from_bytes(hashlib.sha256(b"layer.weight").digest()[:8], "little")
        draws = np.random.Generator(np.random.PCG64([3, key, i])).random(BASE.size).reshape(BASE.shape)
        dropped.append(BASE + np.where(draws < 0.5, 0.0, (model - BASE) / 0.5))
    np.testing.assert_allclose(got, ties_reference(BASE, dropped, 1.0, 1.0, [1, 1, 1]))


def test_slerp_of_unit_vectors_follows_the_great_circle() -> None:
    u0 = np.array([1.0, 0.0, 0.0])
    u1 = np.array([0.0, 1.0, 0.0])
    for t in (0.0, 0.25, 0.5, 1.0):
        got = run(f"slerp:t={t}", [u0, u1])
        np.testing.assert_allclose(got, [math.cos(t * math.pi / 2), math.sin(t * math.pi / 2), 0.0], atol=1e-12)


def test_slerp_of_general_tensors() -> None:
    a, b = MODELS[0], MODELS[1]
    t = 0.3
    ua, ub = a.ravel() / np.linalg.norm(a), b.ravel() / np.linalg.norm(b)
    omega = math.acos(float(ua @ ub))
    expected = (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)
    np.testing.assert_allclose(run("slerp:t=0.3", [a, b]), expected)
    # Without t, the weights decide: t = w_theirs / (w_ours + w_theirs).
    np.testing.assert_allclose(run("slerp", [a, b], [7.0, 3.0]), run("slerp:t=0.3", [a, b]))


def test_slerp_of_nearly_colinear_tensors_is_linear() -> None:
    a = MODELS[0]
    np.testing.assert_allclose(run("slerp:t=0.25", [a, 2 * a]), 0.75 * a + 0.25 * 2 * a)
    np.testing.assert_allclose(run("slerp", [np.zeros(3), np.ones(3)]), np.full(3, 0.5))


def test_slerp_of_float32_tensors_sums_its_angle_in_float64() -> None:
    a, b = (m.astype(np.float32) for m in MODELS[:2])
    wide = [m.astype(np.float64).ravel() for m in (a, b)]
    omega = math.acos(float(wide[0] @ wide[1]) / (np.linalg.norm(wide[0]) * np.linalg.norm(wide[1])))
    expected = (math.sin(0.7 * omega) / math.sin(omega)) * a + (math.sin(0.3 * omega) / math.sin(omega)) * b
    got = run("slerp:t=0.3", [a, b])
    assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_strategies_compute_in_float32_too() -> None:
    models = [m.astype(np.float32) for m in MODELS]
    for spec in ("ties", "dare:seed=1", "slerp"):
        got = run(spec, models[:2], base=BASE.astype(np.float32))
        assert got.dtype == np.float32


def test_spec_parsing_and_errors() -> None:
    assert parse_spec("ties:density=0.2, lambda=1") == ("ties", {"density": "0.2", "lambda": "1"})
    assert load_strategy("ties:density=0.5").describe() == "ties:density=0.5,lambda=1.0"
    with pytest.raises(MergeError, match="has no option 'k'"):
        load_strategy("ties:k=3")
    with pytest.raises(MergeError, match="not a valid float"):
        load_strategy("ties:density=lots")
    with pytest.raises(MergeError, match="density must be in"):
        load_strategy("ties:density=0")
    with pytest.raises(MergeError, match="KEY=VALUE"):
        load_strategy("average:3")
    with pytest.raises(plugins.PluginError, match=r"unknown merges plugin 'soup' \(available: .*average"):
        load_strategy("soup")


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(-1e3, 1e3)),
    st.lists(st.floats(0.1, 10), min_size=2, max_size=4),
    st.integers(0, 2**32 - 1),
)
def test_properties(base: np.ndarray, weights: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    models = [base + rng.standard_normal(base.shape) for _ in weights]
    same = [base.copy() for _ in weights]
    # Merging identical models changes nothing.
    for spec in ("average", "task-arithmetic", "ties", "dare:drop=0.5", "slerp", "breadcrumbs", "model-stock"):
        chosen = same[:2] if spec == "slerp" else same
        merged = load_strategy(spec).merge(base, chosen, weights[: len(chosen)], "t")
        np.testing.assert_allclose(merged, base, atol=1e-12)  # absolute: subnormal inputs round coarsely
    # Task arithmetic and the weighted average are linear in the models.
    got = load_strategy("task-arithmetic").merge(base, models, weights, "t")
    np.testing.assert_allclose(got, base + sum(w * (m - base) for w, m in zip(weights, models, strict=True)), atol=1e-9)
    # TIES with one model and density 1 is that model.
    np.testing.assert_allclose(load_strategy("ties:density=1").merge(base, models[:1], [1.0], "t"), models[0])
