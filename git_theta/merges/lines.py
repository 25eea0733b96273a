"""LiNeS (Wang et al., 2025, "LiNeS: Post-training Layer Scaling Prevents Forgetting and Enhances Model Merging").

The merged task vector of a tensor in block ``l`` (0-based) of ``L`` is scaled by ``alpha + beta * l / (L - 1)``:
shallow blocks stay near the pre-trained model, deep ones take the change. A tensor's block is the first integer
in its name, split on ``.`` and ``/`` (``encoder.layer.3.attention...`` is in block 3), as ``git theta diff
--plot-by layer`` groups tensors; tensors outside numbered blocks (embeddings, final norm, head) get ``alpha``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from git_theta.merges.base import MergeError

_PARTS = re.compile(r"[./]")
_NUMBER = re.compile(r"^\d+$")


def block_of(name: str) -> int | None:
    """The block a tensor belongs to: the first all-digit part of its name, or None."""
    for part in _PARTS.split(name):
        if _NUMBER.match(part):
            return int(part)
    return None


def block_count(names: Iterable[str]) -> int | None:
    """The number of blocks that ``names`` belong to: one more than the largest block number, or None."""
    blocks = [block for block in map(block_of, names) if block is not None]
    return max(blocks) + 1 if blocks else None


def parse_lines(strategy: str, text: str) -> tuple[float, float]:
    """Parse ``ALPHA/BETA``."""
    alpha, sep, beta = text.partition("/")
    try:
        values = (float(alpha), float(beta))
    except ValueError:
        values = (float("nan"), float("nan"))
    if not sep or not all(abs(value) < float("inf") for value in values):
        raise MergeError(f"merge strategy {strategy!r}: lines={text!r} must be ALPHA/BETA, two finite numbers")
    return values


def parse_layers(strategy: str, text: str) -> int:
    """Parse the number of blocks a model has (``layers=L``)."""
    if not text.isdigit() or int(text) < 1:
        raise MergeError(f"merge strategy {strategy!r}: layers={text!r} must be a positive whole number")
    return int(text)


def lines_scale(lines: tuple[float, float], tensor: str, layers: int | None) -> float:
    """The factor of ``tensor``'s merged task vector: alpha + beta * l / (L - 1); alpha outside numbered blocks."""
    alpha, beta = lines
    block = block_of(tensor)
    if block is None or layers is None:
        return alpha
    if block >= layers:
        raise MergeError(
            f"tensor {tensor!r} is in block {block} but the model has {layers} (layers={layers}); "
            f"give the number of blocks of the whole model with layers=N"
        )
    return alpha if layers == 1 else alpha + beta * block / (layers - 1)
