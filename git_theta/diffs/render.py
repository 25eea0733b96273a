"""Presenting comparisons: a table, JSON, and the diff-like text that ``git diff`` shows through our driver."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from git_theta.diffs.result import MODIFIED, CheckpointDiff, TensorDiff, fmt

SORT_KEYS: dict[str, Callable[[TensorDiff], tuple]] = {
    "order": lambda t: (),
    "name": lambda t: (t.name,),
    "rel": lambda t: _descending(t.rel),
    "l2": lambda t: _descending(t.l2),
    "changed": lambda t: _descending(float(t.changed)),
}
_COLUMNS = ("status", "tensor", "dtype/shape", "changed", "fraction", "l2", "rel", "cos")
_STATUS = {"modified": "changed", "added": "added", "removed": "removed"}


def select(diff: CheckpointDiff, sort: str = "order", threshold: float = 0.0) -> list[TensorDiff]:
    """The tensors to show: those whose relative change reaches ``threshold`` (always added, removed, reshaped)."""
    shown = [t for t in diff.tensors if not t.rel < threshold]
    return sorted(shown, key=SORT_KEYS[sort])


def table(diffs: list[CheckpointDiff], labels: tuple[str, str], sort: str, threshold: float) -> str:
    """A table per checkpoint under its summary line."""
    if not diffs:
        return f"no tracked checkpoint differs between {labels[0]} and {labels[1]}\n"
    blocks = []
    for diff in diffs:
        hidden = len(diff.tensors) - len(select(diff, sort, threshold))
        note = f" ({hidden} below the threshold not shown)" if hidden else ""
        summary = f"{diff.label} ({labels[0]} -> {labels[1]}): {diff.summary()}{note}\n"
        blocks.append(summary + changed_tensors(diff, sort, threshold))
    return "\n".join(blocks)


def changed_tensors(diff: CheckpointDiff, sort: str = "order", threshold: float = 0.0) -> str:
    """The table of a checkpoint's changed, added and removed tensors (those ``select`` keeps)."""
    return _aligned([_row(t) for t in select(diff, sort, threshold)])


def patch(diff: CheckpointDiff, old_path: str, new_path: str, old_exists: bool = True, new_exists: bool = True) -> str:
    """Diff-like text: a ``-`` line (old layout and norm) and a ``+`` line (new layout and statistics) per tensor."""
    old_name = f"a/{old_path}\t({diff.old_tensors} tensors)" if old_exists else "/dev/null"
    new_name = f"b/{new_path}\t({diff.new_tensors} tensors)" if new_exists else "/dev/null"
    lines = [
        f"diff --theta a/{old_path} b/{new_path}",
        f"--- {old_name}",
        f"+++ {new_name}",
        f"@@ {diff.summary()} @@",
    ]
    width = max((len(t.name) for t in diff.tensors), default=0)
    for tensor in diff.tensors:
        name = tensor.name.ljust(width)
        change = tensor.change
        if tensor.old is not None:
            norm = f"  norm {fmt(change.old_norm)}" if change is not None else ""
            lines.append(f"-    {name}  {tensor.old}{norm}")
        if tensor.new is not None:
            lines.append(f"+    {name}  {tensor.new}{_statistics(tensor)}".rstrip())
    return "\n".join(lines) + "\n"


def as_json(diffs: list[CheckpointDiff], labels: tuple[str, str], sort: str, threshold: float) -> str:
    """JSON: the two sides and, per checkpoint, its counts and the selected tensors."""
    files = []
    for diff in diffs:
        data = diff.to_json()
        data["tensors"] = [t.to_json() for t in select(diff, sort, threshold)]
        files.append(data)
    return json.dumps({"old": labels[0], "new": labels[1], "threshold": threshold, "checkpoints": files}, indent=2)


def fraction(value: float) -> str:
    """A fraction as a percentage that never rounds a change to zero."""
    if 0 < value < 1e-4:
        return "<0.01%"
    return f"{value * 100:.2f}%"


def _statistics(tensor: TensorDiff) -> str:
    change = tensor.change
    if change is None:
        return "  (shape or kind changed: not compared element-wise)" if tensor.status == MODIFIED else ""
    return (
        f"  norm {fmt(change.new_norm)}  changed {change.changed}/{change.elements} ({fraction(change.fraction)})"
        f"  l2 {fmt(change.l2)}  rel {fmt(change.rel)}  cos {change.cos:.6f}"
    )


def _row(tensor: TensorDiff) -> list[str]:
    layout = str(tensor.new or tensor.old)
    if tensor.old is not None and tensor.new is not None and tensor.old != tensor.new:
        layout = f"{tensor.old} -> {tensor.new}"
    change = tensor.change
    if change is None:
        return [_STATUS[tensor.status], tensor.name, layout, str(tensor.changed), "", "", "", ""]
    numbers = [fmt(change.l2), fmt(change.rel), f"{change.cos:.6f}"]
    return [_STATUS[tensor.status], tensor.name, layout, str(change.changed), fraction(change.fraction), *numbers]


def _aligned(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    everything = [list(_COLUMNS), *rows]
    widths = [max(len(row[i]) for row in everything) for i in range(len(_COLUMNS))]
    lines = []
    for row in everything:
        cells = [cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _descending(value: float) -> tuple[bool, float]:
    return (math.isnan(value), -value if not math.isnan(value) else 0.0)
