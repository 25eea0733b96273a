"""Model Breadcrumbs against float64 references: the definition of docs/merges.md, and mergekit's where they agree.

mergekit (``mergekit/sparsify.py: magnitude_outliers``) sorts the magnitudes and keeps ranks
[n_bot, size - n_top) with n_top = int(gamma * size), n_keep = int(density * size), n_bot = size - n_keep - n_top
(n_top lowered when negative). git-theta rounds n_keep up (as its TIES does) and keeps every element equal in
magnitude to a boundary, where mergekit's sort keeps an arbitrary subset: the two agree when density * size is a
whole number and no two magnitudes are equal, as with the random tensors below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from git_theta.merges.base import MergeError, load_strategy

RNG = np.random.default_rng(2024)
BASE = RNG.standard_normal((10, 20))
MODELS = [BASE + RNG.standard_normal((10, 20)) for _ in range(3)]
WEIGHTS = [1.0, 0.5, 2.0]


def mergekit_mask(tau: np.ndarray, density: float, gamma: float) -> np.ndarray:
    """mergekit's magnitude_outliers, from its definition: drop the top gamma, keep the next density."""
    size = tau.size
    n_top, n_keep = int(gamma * size), int(density * size)
    n_bot = size - n_keep - n_top
    if n_bot < 0:
        n_top, n_bot = n_top + n_bot, 0
    ascending = np.argsort(np.abs(tau).ravel(), kind="stable")
    mask = np.zeros(size, bool)
    mask[ascending[n_bot : size - n_top]] = True
    return np.where(mask.reshape(tau.shape), tau, 0.0)


def mergekit_merge(models, density, gamma, lam, weights, consensus=False, normalize=False) -> np.ndarray:
    """mergekit's generalized task arithmetic: sparsify, weigh, (sign consensus by sum), sum, (normalize), lambda."""
    deltas = np.stack([mergekit_mask(m - BASE, density, gamma) for m in models])
    weighted = deltas * np.asarray(weights)[:, None, None]
    mask = np.ones_like(deltas, bool)
    if consensus:
        majority = np.where(weighted.sum(axis=0) >= 0, 1.0, -1.0)
        mask = np.sign(weighted) == majority
    mixed = (weighted * mask).sum(axis=0)
    if normalize:
        divisor = (np.asarray(weights)[:, None, None] * mask).sum(axis=0)
        mixed = mixed / np.where(divisor == 0, 1, divisor)
    return BASE + lam * mixed


def run(spec: str, weights: list[float] = WEIGHTS) -> np.ndarray:
    return load_strategy(spec).merge(BASE, MODELS, weights, "layer.weight")


@pytest.mark.parametrize(("density", "gamma"), [(0.1, 0.01), (0.5, 0.1), (0.9, 0.05), (0.2, 0.9)])
def test_breadcrumbs_agrees_with_mergekit(density: float, gamma: float) -> None:
    got = run(f"breadcrumbs:density={density},gamma={gamma},lambda=0.7")
    np.testing.assert_allclose(got, mergekit_merge(MODELS, density, gamma, 0.7, WEIGHTS), rtol=0, atol=1e-12)


@pytest.mark.parametrize("normalize", [False, True])
def test_breadcrumbs_ties_agrees_with_mergekit(normalize: bool) -> None:
    got = run(f"breadcrumbs-ties:density=0.3,gamma=0.05,normalize={normalize}")
    expected = mergekit_merge(MODELS, 0.3, 0.05, 1.0, WEIGHTS, consensus=True, normalize=normalize)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_the_paper_defaults_keep_ten_percent_without_the_top_one() -> None:
    tau = MODELS[0] - BASE
    got = load_strategy("breadcrumbs").merge(BASE, MODELS[:1], [1.0], "w") - BASE
    kept = np.flatnonzero(got.ravel())
    assert len(kept) == math.ceil(0.1 * tau.size)  # 20 of 200
    ranks = np.argsort(-np.abs(tau).ravel(), kind="stable")
    assert set(kept) == set(ranks[2:22])  # the two largest (1% of 200) dropped, the next 20 kept
    assert load_strategy("breadcrumbs").describe() == "breadcrumbs:density=0.1,gamma=0.01,lambda=1.0"


def test_elements_equal_to_a_boundary_are_kept() -> None:
    base = np.zeros(10)
    model = np.array([9.0, 5, 5, 5, 4, 3, 3, 2, 1, 0.5])
    got = load_strategy("breadcrumbs:density=0.3,gamma=0.1").merge(base, [model], [1.0], "w")
    # Drop the top 1 (9), keep 3 from there: 5, 5, 5; then 4 is out (mergekit would keep the same here).
    assert got.tolist() == [0, 5, 5, 5, 0, 0, 0, 0, 0, 0]
    tied = load_strategy("breadcrumbs:density=0.2,gamma=0.1").merge(base, [model], [1.0], "w")
    assert tied.tolist() == [0, 5, 5, 5, 0, 0, 0, 0, 0, 0]  # ranks 2-3 fall among equal 5s: all three are kept


def test_density_one_keeps_everything_and_options_are_checked() -> None:
    taus = sum(w * (m - BASE) for w, m in zip(WEIGHTS, MODELS, strict=True))
    np.testing.assert_allclose(run("breadcrumbs:density=1,gamma=0.2"), BASE + taus)  # gamma yields to density
    with pytest.raises(MergeError, match="gamma must be in"):
        load_strategy("breadcrumbs:gamma=1")
    with pytest.raises(MergeError, match="density must be in"):
        load_strategy("breadcrumbs-ties:density=0")


def test_float32_versions_are_merged_in_float32() -> None:
    base, models = BASE.astype(np.float32), [m.astype(np.float32) for m in MODELS]
    got = load_strategy("breadcrumbs-ties").merge(base, models, WEIGHTS, "w")
    assert got.dtype == np.float32
    expected = mergekit_merge([m.astype(np.float64) for m in models], 0.1, 0.01, 1.0, WEIGHTS, consensus=True)
    np.testing.assert_allclose(got, expected + (base.astype(np.float64) - BASE), rtol=1e-6, atol=1e-6)
