"""What the strategies that merge task vectors (tau_i = theta_i - theta_base) share: LiNeS and fine-tuning transfer.

Each such strategy computes a merged task vector ``delta`` (its ``lambda`` included); the result is
``theta_base + s * delta``, where ``s`` is the LiNeS factor of the tensor's block (``lines=ALPHA/BETA``, see
merges/lines.py; without it ``theta_base + delta``, with no multiplication).

In a pick (cherry-pick, revert or rebase: the sides are ours and the picked commit, the ancestor its parent), the
merged task vector is that of the picked change alone, added to ours: ``theta_ours + s * delta(theta_picked -
theta_base)``, the fine-tuning transfer of Lin et al. (2025), "Efficient Model Development through Fine-tuning
Transfer". Ours, the new base, is not scaled.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np

from git_theta.merges.base import MergeContext, MergeStrategy, Step, Versions, merge_in_memory
from git_theta.merges.lines import lines_scale, parse_layers, parse_lines


class TaskVectorStrategy(MergeStrategy):
    """A strategy of the form theta_base + s * delta(tau_1, ..., tau_n); takes ``lines`` and ``layers``."""

    needs_base = True
    extra_options = ("lines", "layers")
    #: False when the formula needs several changes (model stock): a pick then merges its three versions as is.
    transfers: ClassVar[bool] = True

    def __init__(self, options: dict[str, str] | None = None) -> None:
        self.lines: tuple[float, float] | None = None
        self.layers: int | None = None
        super().__init__(options)

    def extra_option(self, key: str, text: str) -> None:
        if key == "lines":
            self.lines = parse_lines(self.name, text)
        else:
            self.layers = parse_layers(self.name, text)

    def extra_described(self) -> list[str]:
        described = [] if self.lines is None else [f"lines={self.lines[0]:g}/{self.lines[1]:g}"]
        return described + ([] if self.layers is None else [f"layers={self.layers}"])

    @abstractmethod
    def prepare_changes(self, versions: Versions, weights: list[float], tensor: str) -> Step:
        """Make the passes the formula needs and return the step that gives a chunk's merged task vector."""

    def keeps_a_lone_change(self) -> bool:
        """Tell whether the formula gives one change, merged alone, back exactly (lambda 1, nothing dropped)."""
        return False

    def rescales_lone_change(self, transfer: bool) -> bool:
        return self.lines is not None or (transfer and self.transfers and not self.keeps_a_lone_change())

    def merge(self, base: np.ndarray | None, models: list[np.ndarray], weights: list[float], tensor: str) -> np.ndarray:
        return merge_in_memory(self, base, models, weights, tensor)

    def prepare(self, versions: Versions, weights: list[float], tensor: str) -> Step:
        context = versions.context
        scale = 1.0 if self.lines is None else lines_scale(self.lines, tensor, self.layers or context.layers)
        if context.transfer and self.transfers:
            picked = Subset(versions, [versions.models - 1])
            change = self.prepare_changes(picked, weights[-1:], tensor)
            return lambda base, models: add_scaled(models[0], change(base, models[-1:]), scale)
        change = self.prepare_changes(versions, weights, tensor)
        return lambda base, models: add_scaled(base, change(base, models), scale)


def add_scaled(start: np.ndarray | None, delta: np.ndarray, scale: float) -> np.ndarray:
    """``start + scale * delta`` (``start + delta`` when the scale is 1: the same bits as without LiNeS)."""
    assert start is not None
    return start + delta if scale == 1.0 else start + scale * delta


def unit_weights(weights: list[float] | None) -> bool:
    """Tell whether no weight other than 1 was given."""
    return weights is None or all(weight == 1 for weight in weights)


class Subset:
    """Some of the models of ``versions``, renumbered from 0 (the picked change of a pick)."""

    def __init__(self, versions: Versions, indexes: list[int]) -> None:
        self.versions, self.indexes = versions, indexes
        self.size, self.models, self.dtype = versions.size, len(indexes), versions.dtype
        self.context: MergeContext = versions.context

    def chunks(self, models: Sequence[int], base: bool) -> Iterator[tuple[np.ndarray | None, list[np.ndarray]]]:
        return self.versions.chunks([self.indexes[index] for index in models], base)
