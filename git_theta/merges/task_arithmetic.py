"""``task-arithmetic``: add the models' changes from the common ancestor (Ilharco et al., 2023)."""

from __future__ import annotations

import numpy as np

from git_theta.merges.base import MergeError, Step, Versions
from git_theta.merges.task_vectors import TaskVectorStrategy, unit_weights


class TaskArithmetic(TaskVectorStrategy):
    """theta_base + lambda * sum(w_i * (theta_i - theta_base)); with lambda = 1: ours + theirs - base."""

    name = "task-arithmetic"
    summary = "base + lambda * sum of the changes (fine-tuning transfer)"
    defaults = {"lambda": 1.0}
    elementwise = True

    def check(self) -> None:
        if not np.isfinite(self.options["lambda"]):
            raise MergeError("task-arithmetic: lambda must be a finite number")

    def keeps_a_lone_change(self) -> bool:
        return self.options["lambda"] == 1 and unit_weights(self.weights)

    def prepare_changes(self, versions: Versions, weights: list[float], tensor: str) -> Step:
        lam = self.options["lambda"]

        def step(base: np.ndarray | None, models: list[np.ndarray]) -> np.ndarray:
            assert base is not None
            total = np.zeros_like(base)
            for weight, model in zip(weights, models, strict=True):
                total += weight * (model - base)
            return lam * total

        return step
