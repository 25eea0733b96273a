"""``ties``: TIES-merging (Yadav et al., 2023): trim, elect sign, disjoint mean."""

from __future__ import annotations

import math

import numpy as np

from git_theta.merges.base import MergeError, MergeStrategy


class Ties(MergeStrategy):
    """Keep each change's top ``density`` by magnitude, elect a sign per element, average the agreeing changes."""

    name = "ties"
    summary = "trim to the largest changes, elect signs, average the agreeing ones"
    defaults = {"density": 0.2, "lambda": 1.0}
    needs_base = True

    def check(self) -> None:
        if not 0 < self.options["density"] <= 1:
            raise MergeError("ties: density must be in (0, 1]")

    def merge(self, base: np.ndarray | None, models: list[np.ndarray], weights: list[float], tensor: str) -> np.ndarray:
        assert base is not None
        deltas = [trim(model - base, self.options["density"]) for model in models]
        return base + self.options["lambda"] * disjoint_mean(deltas, weights)


def trim(delta: np.ndarray, density: float) -> np.ndarray:
    """Zero all but the ceil(density * size) largest magnitudes (ties with the smallest kept one are kept too)."""
    keep = math.ceil(density * delta.size)
    if keep >= delta.size:
        return delta
    magnitude = np.abs(delta).reshape(-1)
    threshold = np.partition(magnitude, delta.size - keep)[delta.size - keep]
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
