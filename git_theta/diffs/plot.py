"""A picture of a comparison: the relative change of each changed tensor, or of each layer (needs matplotlib)."""

from __future__ import annotations

import math
import re
from pathlib import Path

from git_theta.diffs.result import CheckpointDiff, TensorDiff
from git_theta.errors import GitThetaError

#: Above this many bars, tensors are grouped by layer.
MAX_TENSOR_BARS = 60
_NUMBER = re.compile(r"^\d+$")


def layer_of(name: str) -> str:
    """The layer a tensor belongs to: its name up to the first numeric part (``encoder.layer.3``), else its module."""
    parts = re.split(r"[./]", name)
    for index, part in enumerate(parts):
        if _NUMBER.match(part):
            return ".".join(parts[: index + 1])
    return ".".join(parts[:-1]) or name


def bars(diffs: list[CheckpointDiff], shown: list[list[TensorDiff]], by: str) -> list[tuple[str, float]]:
    """``(label, relative change)`` per tensor, or per layer (the largest relative change of its tensors)."""
    many = len(diffs) > 1
    if by == "auto":
        by = "tensor" if sum(len(tensors) for tensors in shown) <= MAX_TENSOR_BARS else "layer"
    values: dict[str, float] = {}
    for diff, tensors in zip(diffs, shown, strict=True):
        measured = [t for t in tensors if t.change is not None and math.isfinite(t.change.rel)]
        for tensor in measured:
            key = tensor.name if by == "tensor" else layer_of(tensor.name)
            key = f"{diff.path}: {key}" if many else key
            values[key] = max(values.get(key, 0.0), tensor.rel)
    return list(values.items())


def plot(diffs: list[CheckpointDiff], shown: list[list[TensorDiff]], title: str, file: Path, by: str) -> None:
    """Draw a horizontal bar per tensor or layer and save it to ``file`` (PNG, or any format matplotlib knows)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GitThetaError("--plot needs matplotlib; install it with: pip install 'git-theta[plot]'") from None
    data = bars(diffs, shown, by)
    figure, axes = plt.subplots(figsize=(9, max(2.5, 0.24 * len(data) + 1.4)))
    if data:
        labels, values = zip(*data, strict=True)
        axes.barh(range(len(values)), values, color="tab:blue")
        axes.set_yticks(range(len(values)), labels, fontsize=7)
        axes.invert_yaxis()
        if all(value > 0 for value in values):
            axes.set_xscale("log")
        axes.set_xlabel("relative change ||new - old|| / ||old||")
    else:
        axes.text(0.5, 0.5, "no element-wise changes to show", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    try:
        figure.savefig(file, dpi=120)
    except (OSError, ValueError) as exc:
        raise GitThetaError(f"cannot write the plot to {file}: {exc}") from exc
    finally:
        plt.close(figure)
