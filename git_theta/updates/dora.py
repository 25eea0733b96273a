"""``dora``: a weight-decomposed low-rank update (DoRA, Liu et al. 2024), merged as PEFT merges it.

Parts: ``R`` and ``C`` as for ``low-rank``, and ``magnitude``, one entry per output feature; parameters ``scale`` and
``axis``: the axis of the tensor (viewed as a matrix, as ``low-rank`` views it) along which the output features run:
0 for a linear layer's or a conv's weight (one magnitude per row), 1 for GPT-2's Conv1D and for embeddings, which
PEFT stores transposed (one per column). With ``V = base + scale * R @ C``, each output feature's slice of ``V`` is
scaled to ``magnitude / norm``, its L2 norm: ``new = V * magnitude / ||V||`` (PEFT's ``merge_and_unload``).

As for ``low-rank``, everything is computed in float64 with element-wise operations in a fixed order (the sums of
squares too, pairwise in a fixed tree) and rounded once: the same bits on every machine.
"""

from __future__ import annotations

import numpy as np

from git_theta.updates.base import Payload, Update, UpdateError, as_matrix, round_to, row_chunks, widened
from git_theta.updates.low_rank import LowRankUpdate, low_rank_product


class DoraUpdate(Update):
    """A low-rank update whose output features are then rescaled to learned magnitudes."""

    name = "dora"

    def apply(self, base: np.ndarray, payload: Payload) -> np.ndarray:
        problem = self.mismatch(base.shape, payload)
        if problem:
            raise UpdateError(problem)
        matrix = base.reshape(as_matrix(base.shape))
        if int(payload.params.get("axis", 0)) == 1:  # features along columns: work on the transposed views
            parts = {"R": payload.parts["C"].T, "C": payload.parts["R"].T, "magnitude": payload.parts["magnitude"]}
            return _by_rows(matrix.T, Payload(parts, payload.params)).T.reshape(base.shape)
        return _by_rows(matrix, payload).reshape(base.shape)

    def mismatch(self, shape: tuple[int, ...], payload: Payload) -> str | None:
        problem = LowRankUpdate().mismatch(shape, payload)
        if problem:
            return problem.replace("low-rank", "DoRA")
        axis = int(payload.params.get("axis", 0))
        features = as_matrix(shape)[axis] if axis in (0, 1) else -1
        if payload.parts["magnitude"].size != features:
            return (
                f"a DoRA magnitude of {payload.parts['magnitude'].size} entries does not fit a tensor of shape {shape}"
            )
        return None


def _by_rows(matrix: np.ndarray, payload: Payload) -> np.ndarray:
    """The update of ``matrix`` whose output features are its rows."""
    left, right = widened(payload.parts["R"]), widened(payload.parts["C"])
    magnitude = widened(payload.parts["magnitude"]).reshape(-1)
    scale = float(payload.params.get("scale", 1.0))
    out = np.empty(matrix.shape, matrix.dtype)
    for rows in row_chunks(matrix.shape):  # every row is scaled by its own norm: chunks of rows are independent
        merged = widened(matrix[rows]) + low_rank_product(left[rows], right, scale)
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero row gives NaNs, as it does in PEFT
            factors = magnitude[rows] / np.sqrt(_row_sums_of_squares(merged))
        merged *= factors[:, None]
        out[rows] = round_to(merged, matrix.dtype)
    return out


def _row_sums_of_squares(rows: np.ndarray) -> np.ndarray:
    """Each row's sum of squares, added pairwise in a fixed tree of element-wise additions (numpy's own sums group
    terms as its build and the memory layout decide)."""
    terms = rows * rows
    while terms.shape[1] > 1:
        if terms.shape[1] % 2:  # an odd count: the last term is paired with an exact zero
            terms = np.concatenate([terms, np.zeros((terms.shape[0], 1), terms.dtype)], axis=1)
        terms = terms[:, 0::2] + terms[:, 1::2]
    return terms.reshape(rows.shape[0], -1).sum(axis=1)  # one term (or none) per row
