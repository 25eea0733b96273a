"""``model-stock``: Model Stock (Jang et al., 2024, "Model Stock: All we need is just a few fine-tuned models").

Data-free: from the angle between the fine-tunes' changes, per tensor. With N changes tau_i and cos the mean of
their pairwise cosines, t = N cos / (1 + (N - 1) cos) and the result is t * mean(theta_i) + (1 - t) * theta_base,
computed as theta_base + t * sum(w_i tau_i) / sum(w_i) (mergekit's ``model_stock``, per tensor; mergekit floors the
norm product at 1e-6, here a zero change has cosine 0). Models of weight 0 are left out (``--weight HEAD=0`` when
HEAD is the pre-trained model the fine-tunes started from).
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from git_theta.merges.base import MergeError, Step, Versions
from git_theta.merges.task_vectors import TaskVectorStrategy


class ModelStock(TaskVectorStrategy):
    """theta_base + t * mean(tau_i), t from the mean pairwise cosine of the changes."""

    name = "model-stock"
    summary = "move from the base toward the mean by the angle between the changes (Model Stock)"
    #: It needs the angle between several fine-tunes: a pick merges its three versions as they are.
    transfers = False

    def prepare_changes(self, versions: Versions, weights: list[float], tensor: str) -> Step:
        active = [index for index, weight in enumerate(weights) if weight > 0]
        if len(active) < 2:
            raise MergeError(f"model-stock: tensor {tensor!r} has {len(active)} change(s) of weight > 0; it needs 2")
        cosine = mean_cosine(versions, active)
        count = len(active)
        denominator = 1 + (count - 1) * cosine
        if denominator <= 0:
            raise MergeError(
                f"model-stock: the changes of tensor {tensor!r} point apart (mean cosine {cosine:.3g}), which the "
                "formula cannot merge; choose another strategy for it (--pattern NAME=STRATEGY)"
            )
        t = count * cosine / denominator
        total = sum(weights[index] for index in active)

        def step(base: np.ndarray | None, models: list[np.ndarray]) -> np.ndarray:
            assert base is not None
            mean = np.zeros_like(base)
            for index in active:
                mean += weights[index] * (models[index] - base)
            return t * (mean / total)

        return step


def mean_cosine(versions: Versions, active: list[int]) -> float:
    """The mean of the cosines between the changes of ``active`` models, summed in float64 chunk by chunk."""
    gram = np.zeros((len(active), len(active)))
    for base, chunk in versions.chunks(active, base=True):
        assert base is not None
        changes = np.stack([model.astype(np.float64) - base.astype(np.float64) for model in chunk])
        gram += changes @ changes.T
    cosines = []
    for i, j in combinations(range(len(active)), 2):
        norms = math.sqrt(gram[i, i]) * math.sqrt(gram[j, j])
        cosines.append(min(1.0, max(-1.0, gram[i, j] / norms)) if norms > 0 else 0.0)
    return sum(cosines) / len(cosines)
