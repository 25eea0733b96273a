"""``slerp``: spherical linear interpolation between two models (Shoemake, 1985), as used for model merging."""

from __future__ import annotations

import math

import numpy as np

from git_theta.merges.base import MergeError, MergeStrategy

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
        first, second = models
        # Without an explicit t, the weights decide: equal weights (the default) give the midpoint.
        t = self.options["t"] if "t" in self.given else weights[1] / (weights[0] + weights[1])
        norms = float(np.linalg.norm(first)) * float(np.linalg.norm(second))
        cosine = float(np.vdot(first, second)) / norms if norms > 0 else 1.0
        if abs(cosine) > COLINEAR:
            return (1 - t) * first + t * second
        omega = math.acos(cosine)
        return (math.sin((1 - t) * omega) / math.sin(omega)) * first + (math.sin(t * omega) / math.sin(omega)) * second
