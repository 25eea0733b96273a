"""``dare``: drop and rescale the changes at random (Yu et al., 2024), then task arithmetic or TIES."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from git_theta.merges.base import MergeError, Step, Versions
from git_theta.merges.task_vectors import TaskVectorStrategy, unit_weights
from git_theta.merges.ties import cut, disjoint_mean, trim_thresholds


class Dare(TaskVectorStrategy):
    """Drop each element of each change with probability ``drop``, scale the rest by 1 / (1 - drop), then combine."""

    name = "dare"
    summary = "randomly drop changes and rescale the rest (seeded), then task arithmetic or ties"
    defaults = {"drop": 0.9, "seed": 0, "lambda": 1.0, "then": "task-arithmetic", "density": 1.0}

    def check(self) -> None:
        if not 0 <= self.options["drop"] < 1:
            raise MergeError("dare: drop must be in [0, 1)")
        if self.options["then"] not in ("task-arithmetic", "ties"):
            raise MergeError("dare: then must be task-arithmetic or ties")
        if not 0 < self.options["density"] <= 1:
            raise MergeError("dare: density must be in (0, 1]")

    def keeps_a_lone_change(self) -> bool:
        kept = self.options["drop"] == 0 and self.options["lambda"] == 1 and unit_weights(self.weights)
        return kept and (self.options["then"] == "task-arithmetic" or self.options["density"] == 1)

    def prepare_changes(self, versions: Versions, weights: list[float], tensor: str) -> Step:
        def changes(index: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
            return dropped_changes(self.options["seed"], tensor, index, self.options["drop"])

        ties = self.options["then"] == "ties"
        # The trim pass draws each mask once more from a new generator: the same draws as the last step's.
        thresholds = trim_thresholds(versions, self.options["density"], changes) if ties else []
        current = [changes(index) for index in range(versions.models)]
        lam = self.options["lambda"]

        def step(base: np.ndarray | None, models: list[np.ndarray]) -> np.ndarray:
            assert base is not None
            deltas = [change(model, base) for change, model in zip(current, models, strict=True)]
            if ties:
                deltas = [cut(delta, threshold) for delta, threshold in zip(deltas, thresholds, strict=True)]
                return lam * disjoint_mean(deltas, weights)
            return lam * sum(weight * delta for weight, delta in zip(weights, deltas, strict=True))

        return step


def dropped_changes(seed: int, tensor: str, index: int, drop: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Model ``index``'s change, dropped and rescaled; called chunk after chunk, it draws its mask in C order."""
    rng = dare_rng(seed, tensor, index)

    def change(model: np.ndarray, base: np.ndarray) -> np.ndarray:
        kept = rng.random(model.size).reshape(model.shape) >= drop
        return np.where(kept, (model - base) / (1 - drop), 0).astype(base.dtype, copy=False)

    return change


def dare_rng(seed: int, tensor: str, index: int) -> np.random.Generator:
    """The generator of model ``index``'s mask for ``tensor``: the same for every run, different for every tensor."""
    key = int.from_bytes(hashlib.sha256(tensor.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, key, index])
