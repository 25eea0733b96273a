"""``breadcrumbs`` and ``breadcrumbs-ties``: Model Breadcrumbs (Davari & Belilovsky, 2024, "Model Breadcrumbs:
Scaling Multi-Task Model Merging with Sparse Masks"), with the options and the TIES variant as mergekit defines them.

Per tensor, each change tau_i loses its ``gamma`` fraction of largest magnitudes (outliers) and keeps the next
``density`` fraction (the smallest rest is dropped): n_top = floor(gamma * size) and n_keep = ceil(density * size)
elements, n_top lowered so that n_top + n_keep <= size (mergekit rounds n_keep down). Elements equal in magnitude to
a boundary are kept. The masked changes are summed (``breadcrumbs``) or, after TIES's sign election, summed where
they agree with the elected sign (``breadcrumbs-ties``; divided by the agreeing weights with ``normalize=true``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from git_theta.merges.base import MergeError, Step, Versions
from git_theta.merges.task_vectors import TaskVectorStrategy
from git_theta.merges.ties import largest_magnitudes

#: The magnitudes between which a change is kept: (lowest kept, highest kept); None keeps every element.
Band = tuple[np.floating, np.floating] | None


class Breadcrumbs(TaskVectorStrategy):
    """theta_base + lambda * sum(w_i * mask_i(tau_i)), mask_i dropping the largest and the smallest changes."""

    name = "breadcrumbs"
    summary = "drop each change's outliers and smallest values, then add them (Model Breadcrumbs)"
    #: The paper's 90%-sparse masks without the top 1%.
    defaults = {"density": 0.1, "gamma": 0.01, "lambda": 1.0}

    def check(self) -> None:
        if not 0 < self.options["density"] <= 1:
            raise MergeError(f"{self.name}: density must be in (0, 1]")
        if not 0 <= self.options["gamma"] < 1:
            raise MergeError(f"{self.name}: gamma must be in [0, 1)")
        if not np.isfinite(self.options["lambda"]):
            raise MergeError(f"{self.name}: lambda must be a finite number")

    def prepare_changes(self, versions: Versions, weights: list[float], tensor: str) -> Step:
        bands = magnitude_bands(versions, self.options["density"], self.options["gamma"])
        lam = self.options["lambda"]

        def step(base: np.ndarray | None, models: list[np.ndarray]) -> np.ndarray:
            assert base is not None
            deltas = [crumbs(model - base, band) for model, band in zip(models, bands, strict=True)]
            return lam * self.combine(deltas, weights)

        return step

    def combine(self, deltas: list[np.ndarray], weights: list[float]) -> np.ndarray:
        """The merged change of the masked changes: their weighted sum."""
        total = np.zeros_like(deltas[0])
        for weight, delta in zip(weights, deltas, strict=True):
            total += weight * delta
        return total


class BreadcrumbsTies(Breadcrumbs):
    """Breadcrumbs masks, then TIES's sign election: sum (or mean) of the masked changes that agree with it."""

    name = "breadcrumbs-ties"
    summary = "breadcrumbs masks, then TIES sign election (as mergekit's breadcrumbs_ties)"
    defaults = {**Breadcrumbs.defaults, "normalize": False}

    def combine(self, deltas: list[np.ndarray], weights: list[float]) -> np.ndarray:
        weighted = [weight * delta for weight, delta in zip(weights, deltas, strict=True)]
        # mergekit elects +1 where the sum is 0 (where the changes cancel exactly; TIES's paper leaves no sign).
        elected = np.where(sum(weighted) >= 0, 1, -1)
        total = np.zeros_like(deltas[0])
        count = np.zeros_like(deltas[0])
        for weight, delta, part in zip(weights, deltas, weighted, strict=True):
            agree = np.sign(delta) == elected
            total += np.where(agree, part, 0)
            count += np.where(agree, weight, 0)
        if not self.options["normalize"]:
            return total
        return np.divide(total, count, out=np.zeros_like(total), where=count != 0)


def magnitude_bands(versions: Versions, density: float, gamma: float) -> list[Band]:
    """Per model, the magnitudes of the largest and of the smallest change it keeps (one pass per model)."""
    size = versions.size
    keep = math.ceil(density * size)
    top = min(math.floor(gamma * size), size - keep)
    if top == 0 and keep >= size:
        return [None] * versions.models
    subtract: Callable[[int], Callable[[np.ndarray, np.ndarray], np.ndarray]] = lambda index: np.subtract  # noqa: E731
    found = largest_magnitudes(versions, [top + 1, top + keep], subtract)
    return [(low, high) for high, low in found]


def crumbs(delta: np.ndarray, band: Band) -> np.ndarray:
    """Zero the changes outside ``band`` (those equal to a boundary are kept)."""
    if band is None:
        return delta
    magnitude = np.abs(delta)
    kept = (magnitude >= band[0]) & (magnitude <= band[1])
    return np.where(kept, delta, 0).astype(delta.dtype, copy=False)
