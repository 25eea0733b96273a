"""Model Stock against a float64 reference of the paper's formula, as mergekit's model_stock computes it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from git_theta.merges.base import MergeError, load_strategy

RNG = np.random.default_rng(7)
BASE = RNG.standard_normal(300)
SHARED = RNG.standard_normal(300)


def fine_tunes(count: int) -> list[np.ndarray]:
    """Fine-tunes whose changes share a direction, as runs of one recipe do."""
    return [BASE + SHARED + 0.8 * RNG.standard_normal(300) for _ in range(count)]


def reference(base: np.ndarray, models: list[np.ndarray]) -> np.ndarray:
    """t = N cos / (1 + (N - 1) cos), cos the mean pairwise cosine of the changes; t * mean + (1 - t) * base."""
    taus = [m - base for m in models]
    cosines = [a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in itertools.combinations(taus, 2)]
    cos, n = float(np.mean(cosines)), len(models)
    t = n * cos / (1 + (n - 1) * cos)
    return t * np.mean(models, axis=0) + (1 - t) * base


@pytest.mark.parametrize("count", [2, 3, 5])
def test_model_stock_interpolates_by_the_angle(count: int) -> None:
    models = fine_tunes(count)
    got = load_strategy("model-stock").merge(BASE, models, [1.0] * count, "w")
    np.testing.assert_allclose(got, reference(BASE, models), rtol=1e-12, atol=1e-12)


def test_a_model_of_weight_zero_is_left_out() -> None:
    models = fine_tunes(2)
    got = load_strategy("model-stock").merge(BASE, [BASE, *models], [0.0, 1.0, 1.0], "w")
    np.testing.assert_allclose(got, reference(BASE, models), rtol=1e-12, atol=1e-12)
    with pytest.raises(MergeError, match="has 1 change"):
        load_strategy("model-stock").merge(BASE, [BASE, models[0]], [0.0, 1.0], "w")


def test_orthogonal_changes_keep_the_base_and_identical_ones_take_them() -> None:
    base = np.zeros(4)
    orthogonal = [np.array([1.0, 0, 0, 0]), np.array([0, 1.0, 0, 0])]
    np.testing.assert_allclose(load_strategy("model-stock").merge(base, orthogonal, [1.0, 1.0], "w"), base)
    same = [np.array([1.0, 2, 3, 4])] * 2
    np.testing.assert_allclose(load_strategy("model-stock").merge(base, same, [1.0, 1.0], "w"), same[0])
    opposite = [np.array([1.0, 0, 0, 0]), np.array([-1.0, 0, 0, 0])]
    with pytest.raises(MergeError, match="point apart"):
        load_strategy("model-stock").merge(base, opposite, [1.0, 1.0], "w")
