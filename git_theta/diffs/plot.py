"""A picture of a comparison: the relative change of each changed tensor, or of each layer (needs matplotlib)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from git_theta.diffs.result import CheckpointDiff, TensorDiff
from git_theta.errors import GitThetaError

#: Above this many bars, tensors are grouped by layer.
MAX_TENSOR_BARS = 60
#: At most this many bars are drawn (the largest changes); the axis label says how many were left out.
MAX_BARS = 100
#: Height of one bar's row: more than a 7-point label needs.
ROW_INCHES = 0.22
#: Longer labels keep their last characters.
LABEL_CHARS = 60
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
    by = grouping(shown, by)
    values: dict[str, float] = {}
    for diff, tensors in zip(diffs, shown, strict=True):
        measured = [t for t in tensors if t.change is not None and math.isfinite(t.change.rel)]
        for tensor in measured:
            key = tensor.name if by == "tensor" else layer_of(tensor.name)
            key = f"{diff.path}: {key}" if many else key
            values[key] = max(values.get(key, 0.0), tensor.rel)
    return list(values.items())


def grouping(shown: list[list[TensorDiff]], by: str) -> str:
    """``tensor`` or ``layer``: what ``auto`` means for this many tensors."""
    if by != "auto":
        return by
    return "tensor" if sum(len(tensors) for tensors in shown) <= MAX_TENSOR_BARS else "layer"


def plot(
    diffs: list[CheckpointDiff], shown: list[list[TensorDiff]], title: str, file: Path, by: str, scale: str = "log"
) -> None:
    """Draw a horizontal bar per tensor or layer and save it to ``file`` (PNG, SVG or any format matplotlib knows)."""
    plt = _pyplot()
    figure = draw(diffs, shown, title, by, scale)
    try:
        figure.savefig(file, dpi=120)
    except (OSError, ValueError) as exc:
        raise GitThetaError(f"cannot write the plot to {file}: {exc}") from exc
    finally:
        plt.close(figure)


def draw(diffs: list[CheckpointDiff], shown: list[list[TensorDiff]], title: str, by: str, scale: str = "log") -> Any:
    """The figure: one bar per tensor or layer (at most ``MAX_BARS``, the largest), a label each, never overlapping."""
    plt = _pyplot()
    data = bars(diffs, shown, by)
    kept = largest(data, MAX_BARS)
    # A bar's row is taller than its label's line, so labels never overlap however many bars there are.
    figure, axes = plt.subplots(figsize=(9, max(2.5, ROW_INCHES * len(kept) + 1.6)))
    subtitle = f"relative change ||new - old|| / ||old|| per {grouping(shown, by)}"
    if len(kept) < len(data):
        subtitle += f" (the {len(kept)} largest of {len(data)})"
    if kept:
        labels, values = zip(*kept, strict=True)
        axes.barh(range(len(values)), values, color="tab:blue")
        axes.set_yticks(range(len(values)), [_short(label) for label in labels], fontsize=7)
        axes.set_ylim(len(values) - 0.5, -0.5)
        if scale == "log" and all(value > 0 for value in values):
            axes.set_xscale("log")
        axes.set_xlabel(subtitle + (" (log scale)" if axes.get_xscale() == "log" else ""), fontsize=8)
    else:
        axes.text(0.5, 0.5, "no element-wise changes to show", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def largest(data: list[tuple[str, float]], count: int) -> list[tuple[str, float]]:
    """The ``count`` bars with the largest values, in their original order."""
    if len(data) <= count:
        return data
    chosen = set(sorted(range(len(data)), key=lambda i: -data[i][1])[:count])
    return [bar for index, bar in enumerate(data) if index in chosen]


def _short(label: str) -> str:
    """A label of at most ``LABEL_CHARS`` characters: a long tensor name keeps its end, the part that tells."""
    return label if len(label) <= LABEL_CHARS else "..." + label[-(LABEL_CHARS - 3) :]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        matplotlib.rcParams["svg.fonttype"] = "none"  # an SVG keeps its labels as text
        import matplotlib.pyplot as plt
    except ImportError:
        raise GitThetaError("--plot needs matplotlib; install it with: pip install 'git-theta[plot]'") from None
    return plt
