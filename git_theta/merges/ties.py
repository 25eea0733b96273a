"""``ties``: TIES-merging (Yadav et al., 2023): trim, elect sign, disjoint mean."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from git_theta.merges.base import MergeError, Step, Versions
from git_theta.merges.task_vectors import TaskVectorStrategy, unit_weights

#: Given a model's index, a function from (model chunk, ancestor chunk) to its change, called chunk after chunk.
Changes = Callable[[int], Callable[[np.ndarray, np.ndarray], np.ndarray]]


class Ties(TaskVectorStrategy):
    """Keep each change's top ``density`` by magnitude, elect a sign per element, average the agreeing changes."""

    name = "ties"
    summary = "trim to the largest changes, elect signs, average the agreeing ones"
    defaults = {"density": 0.2, "lambda": 1.0}

    def check(self) -> None:
        if not 0 < self.options["density"] <= 1:
            raise MergeError("ties: density must be in (0, 1]")

    def keeps_a_lone_change(self) -> bool:
        return self.options["density"] == 1 and self.options["lambda"] == 1 and unit_weights(self.weights)

    def prepare_changes(self, versions: Versions, weights: list[float], tensor: str) -> Step:
        thresholds = trim_thresholds(versions, self.options["density"], lambda index: np.subtract)
        lam = self.options["lambda"]

        def step(base: np.ndarray | None, models: list[np.ndarray]) -> np.ndarray:
            assert base is not None
            deltas = [cut(model - base, threshold) for model, threshold in zip(models, thresholds, strict=True)]
            return lam * disjoint_mean(deltas, weights)

        return step


def trim_thresholds(versions: Versions, density: float, changes: Changes) -> list[np.floating | None]:
    """Per model, the magnitude of its k-th largest change, k = ceil(density * size) (None: keep every change)."""
    keep = math.ceil(density * versions.size)
    if keep >= versions.size:
        return [None] * versions.models
    return [ranked[0] for ranked in largest_magnitudes(versions, [keep], changes)]


def largest_magnitudes(versions: Versions, ranks: list[int], changes: Changes) -> list[list[np.floating]]:
    """Per model, the magnitude of its k-th largest change for each k of ``ranks`` (1 <= k <= size).

    One pass per model holds the tensor's magnitudes, in the work dtype, and selects in place (np.partition).
    """
    found = []
    for index in range(versions.models):
        change = changes(index)
        magnitude = np.empty(versions.size, versions.dtype)
        start = 0
        for base, (model,) in versions.chunks([index], base=True):
            assert base is not None
            np.abs(change(model, base), out=magnitude[start : start + model.size])
            start += model.size
        positions = [versions.size - rank for rank in ranks]
        magnitude.partition(positions)
        found.append([magnitude[position] for position in positions])
        del magnitude
    return found


def cut(delta: np.ndarray, threshold: np.floating | None) -> np.ndarray:
    """Zero the changes smaller in magnitude than ``threshold`` (those equal to it are kept)."""
    if threshold is None:
        return delta
    return np.where(np.abs(delta) >= threshold, delta, 0).astype(delta.dtype, copy=False)


def disjoint_mean(deltas: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Elect sign(sum w_i * delta_i) per element; return the weighted mean of the non-zero deltas of that sign."""
    elected = np.sign(sum(weight * delta for weight, delta in zip(weights, deltas, strict=True)))
    total = np.zeros_like(deltas[0])
    count = np.zeros_like(deltas[0])
    for weight, delta in zip(weights, deltas, strict=True):
        agree = (np.sign(delta) == elected) & (delta != 0)
        total += np.where(agree, weight * delta, 0)
        count += np.where(agree, weight, 0)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)
