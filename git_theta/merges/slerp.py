"""``slerp``: spherical linear interpolation between two models (Shoemake, 1985), as used for model merging."""

from __future__ import annotations

import math

import numpy as np

from git_theta.merges.base import MergeError, MergeStrategy, Step, Versions, merge_in_memory

#: Above this |cosine| the two tensors are treated as colinear and interpolated linearly.
COLINEAR = 0.9995


class Slerp(MergeStrategy):
    """Interpolate along the great circle between the flattened tensors; ``t`` = 0 gives ours, 1 gives theirs."""

    name = "slerp"
    summary = "spherical interpolation between two versions (t: 0 = ours, 1 = theirs)"
    defaults = {"t": 0.5}
    models = 2

    def check(self) -> None:
        if not 0 <= self.options["t"] <= 1:
            raise MergeError("slerp: t must be in [0, 1]")

    def merge(self, base: np.ndarray | None, models: list[np.ndarray], weights: list[float], tensor: str) -> np.ndarray:
        return merge_in_memory(self, base, models, weights, tensor)

    def prepare(self, versions: Versions, weights: list[float], tensor: str) -> Step:
        # Without an explicit t, the weights decide: equal weights (the default) give the midpoint.
        t = self.options["t"] if "t" in self.given else weights[1] / (weights[0] + weights[1])
        cosine = _cosine(versions)
        if abs(cosine) > COLINEAR:
            ours, theirs = 1 - t, t
        else:
            omega = math.acos(cosine)
            ours, theirs = math.sin((1 - t) * omega) / math.sin(omega), math.sin(t * omega) / math.sin(omega)
        return lambda base, models: ours * models[0] + theirs * models[1]


def _cosine(versions: Versions) -> float:
    """<v1, v2> / (|v1| |v2|) of the flattened tensors, summed in float64 chunk by chunk (1 for a zero tensor)."""
    squares = [0.0, 0.0]
    inner = 0.0
    for _, chunk in versions.chunks([0, 1], base=False):
        first, second = (part.astype(np.float64) for part in chunk)
        squares[0] += float(first @ first)
        squares[1] += float(second @ second)
        inner += float(first @ second)
    norms = math.sqrt(squares[0]) * math.sqrt(squares[1])
    return inner / norms if norms > 0 else 1.0
