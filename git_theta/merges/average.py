"""``average``: the (weighted) mean of the models, as in model soups."""

from __future__ import annotations

import numpy as np

from git_theta.merges.base import MergeStrategy


class Average(MergeStrategy):
    """sum(w_i * theta_i) / sum(w_i)."""

    name = "average"
    summary = "(weighted) mean of the versions"
    elementwise = True

    def merge(self, base: np.ndarray | None, models: list[np.ndarray], weights: list[float], tensor: str) -> np.ndarray:
        total = np.zeros_like(models[0])
        for weight, model in zip(weights, models, strict=True):
            total += weight * model
        return total / sum(weights)


class UniformSoup(Average):
    """The uniform soup of Wortsman et al. (2022), "Model soups": the mean of the versions (``average``)."""

    name = "uniform-soup"
    summary = "the mean of the versions (a uniform model soup; average under another name)"
