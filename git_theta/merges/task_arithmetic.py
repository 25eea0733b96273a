"""``task-arithmetic``: add the models' changes from the common ancestor (Ilharco et al., 2023)."""

from __future__ import annotations

import numpy as np

from git_theta.merges.base import MergeError, MergeStrategy


class TaskArithmetic(MergeStrategy):
    """theta_base + lambda * sum(w_i * (theta_i - theta_base)); with lambda = 1: ours + theirs - base."""

    name = "task-arithmetic"
    summary = "base + lambda * sum of the changes (fine-tuning transfer)"
    defaults = {"lambda": 1.0}
    needs_base = True
    elementwise = True

    def check(self) -> None:
        if not np.isfinite(self.options["lambda"]):
            raise MergeError("task-arithmetic: lambda must be a finite number")

    def merge(self, base: np.ndarray | None, models: list[np.ndarray], weights: list[float], tensor: str) -> np.ndarray:
        assert base is not None
        total = np.zeros_like(base)
        for weight, model in zip(weights, models, strict=True):
            total += weight * (model - base)
        return base + self.options["lambda"] * total
