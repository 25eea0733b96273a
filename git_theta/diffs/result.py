"""The result of comparing two versions of a checkpoint: one record per tensor that differs, and counts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from git_theta.dtypes import element_count

MODIFIED, ADDED, REMOVED = "modified", "added", "removed"


@dataclass(frozen=True)
class Change:
    """How a tensor of unchanged shape changed."""

    changed: int
    elements: int
    l2: float
    rel: float
    cos: float
    old_norm: float
    new_norm: float

    @property
    def fraction(self) -> float:
        """Fraction of elements that changed (0 for an empty tensor)."""
        return self.changed / self.elements if self.elements else 0.0


@dataclass(frozen=True)
class Layout:
    """A tensor's dtype and shape."""

    dtype: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.dtype} [{', '.join(str(d) for d in self.shape)}]"

    @property
    def elements(self) -> int:
        """Number of elements."""
        return element_count(self.shape)


@dataclass(frozen=True)
class TensorDiff:
    """One tensor that was modified, added or removed; ``change`` is None unless element-wise statistics apply."""

    name: str
    status: str
    old: Layout | None = None
    new: Layout | None = None
    change: Change | None = None

    @property
    def rel(self) -> float:
        """Relative change, for sorting and thresholds: inf when not measurable (added, removed, reshaped)."""
        return self.change.rel if self.change is not None else math.inf

    @property
    def l2(self) -> float:
        """Norm of the change, inf when not measurable."""
        return self.change.l2 if self.change is not None else math.inf

    @property
    def changed(self) -> int:
        """Changed elements; every element of an added, removed or reshaped tensor."""
        if self.change is not None:
            return self.change.changed
        return max(layout.elements for layout in (self.old, self.new) if layout is not None)

    def to_json(self) -> dict[str, Any]:
        """The JSON form (non-finite numbers as the strings "inf", "-inf", "nan")."""
        data: dict[str, Any] = {"name": self.name, "status": self.status}
        for side, layout in (("old", self.old), ("new", self.new)):
            if layout is not None:
                data[side] = {"dtype": layout.dtype, "shape": list(layout.shape)}
        if self.change is not None:
            change = self.change
            data.update(changed=change.changed, elements=change.elements, fraction=_number(change.fraction))
            for key in ("l2", "rel", "cos", "old_norm", "new_norm"):
                data[key] = _number(getattr(change, key))
        return data


@dataclass
class CheckpointDiff:
    """How one checkpoint file differs between two sides (absent sides have no tensors)."""

    path: str
    old_tensors: int = 0
    new_tensors: int = 0
    tensors: list[TensorDiff] = field(default_factory=list)
    unchanged: int = 0
    #: For a sharded model (``path`` is its index json): its shard files on each side.
    old_shards: list[str] = field(default_factory=list)
    new_shards: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The path, and for a sharded model its number of shards on each side."""
        counts = [len(shards) for shards in (self.old_shards, self.new_shards) if shards]
        if not counts:
            return self.path
        shown = str(counts[0]) if len(set(counts)) == 1 else " -> ".join(map(str, counts))
        return f"{self.path}, {shown} shards"

    def count(self, status: str) -> int:
        """Number of tensors with ``status``."""
        return sum(1 for tensor in self.tensors if tensor.status == status)

    @property
    def delta_norm(self) -> float:
        """Norm of the whole change over the tensors that kept their shape (sqrt of the sum of squared l2)."""
        return math.sqrt(sum(t.change.l2**2 for t in self.tensors if t.change is not None))

    def summary(self) -> str:
        """One line: counts of modified, added, removed and unchanged tensors, and the norm of the change."""
        text = (
            f"{self.count(MODIFIED)} changed, {self.count(ADDED)} added, {self.count(REMOVED)} removed, "
            f"{self.unchanged} unchanged"
        )
        measured = [t.change for t in self.tensors if t.change is not None]
        if measured:
            elements = sum(change.changed for change in measured)
            text += f"; {elements} elements changed, ||delta|| {fmt(self.delta_norm)}"
        return text

    def to_json(self) -> dict[str, Any]:
        """The JSON form (with the shard files of a sharded model)."""
        shards = {"old_shards": self.old_shards, "new_shards": self.new_shards}
        return {
            "path": self.path,
            **(shards if self.old_shards or self.new_shards else {}),
            "old_tensors": self.old_tensors,
            "new_tensors": self.new_tensors,
            "changed": self.count(MODIFIED),
            "added": self.count(ADDED),
            "removed": self.count(REMOVED),
            "unchanged": self.unchanged,
            "delta_l2": _number(self.delta_norm),
            "tensors": [tensor.to_json() for tensor in self.tensors],
        }


def fmt(value: float) -> str:
    """Format a statistic compactly (4 significant digits)."""
    return f"{value:.3e}" if math.isfinite(value) and value != 0 else str(value).replace("0.0", "0")


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
