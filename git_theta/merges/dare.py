"""``dare``: drop and rescale the changes at random (Yu et al., 2024), then task arithmetic or TIES."""

from __future__ import annotations

import hashlib

import numpy as np

from git_theta.merges.base import MergeError, MergeStrategy
from git_theta.merges.ties import disjoint_mean, trim


class Dare(MergeStrategy):
    """Drop each element of each change with probability ``drop``, scale the rest by 1 / (1 - drop), then combine."""

    name = "dare"
    summary = "randomly drop changes and rescale the rest (seeded), then task arithmetic or ties"
    defaults = {"drop": 0.9, "seed": 0, "lambda": 1.0, "then": "task-arithmetic", "density": 1.0}
    needs_base = True

    def check(self) -> None:
        if not 0 <= self.options["drop"] < 1:
            raise MergeError("dare: drop must be in [0, 1)")
        if self.options["then"] not in ("task-arithmetic", "ties"):
            raise MergeError("dare: then must be task-arithmetic or ties")
        if not 0 < self.options["density"] <= 1:
            raise MergeError("dare: density must be in (0, 1]")

    def merge(self, base: np.ndarray | None, models: list[np.ndarray], weights: list[float], tensor: str) -> np.ndarray:
        assert base is not None
        drop = self.options["drop"]
        deltas = []
        for index, model in enumerate(models):
            kept = dare_rng(self.options["seed"], tensor, index).random(model.size).reshape(model.shape) >= drop
            deltas.append(np.where(kept, (model - base) / (1 - drop), 0).astype(base.dtype, copy=False))
        if self.options["then"] == "ties":
            deltas = [trim(delta, self.options["density"]) for delta in deltas]
            return base + self.options["lambda"] * disjoint_mean(deltas, weights)
        total = sum(weight * delta for weight, delta in zip(weights, deltas, strict=True))
        return base + self.options["lambda"] * total


def dare_rng(seed: int, tensor: str, index: int) -> np.random.Generator:
    """The generator of model ``index``'s mask for ``tensor``: the same for every run, different for every tensor."""
    key = int.from_bytes(hashlib.sha256(tensor.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, key, index])
