"""The textconv driver (``diff.theta.textconv``): one side of a checkpoint as one readable line per tensor.

``git log -p`` and ``git show`` (and ``git diff --no-ext-diff``) diff these lines, so a changed tensor shows as a
``-`` and a ``+`` line with the statistics of each side. A tensor that changed when it was committed also shows how
it changed since its previous value (which its metadata names): the number and fraction of changed elements, the
L2 norm of the change, the change relative to the previous norm, and the cosine. In ``git log -p`` and ``git show``
that is the commit's own change.

git hands us the file in its working tree form (it has run the smudge filter); when checkouts skip the weights
(``GIT_LFS_SKIP_SMUDGE=1``) it hands us the metadata, and the statistics come from the tensor objects stored locally.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TextIO

from git_theta.checkpoints.base import CheckpointError
from git_theta.diffs.compare import Item
from git_theta.diffs.numeric import compare, summarize
from git_theta.diffs.parallel import ordered_map
from git_theta.diffs.result import fmt
from git_theta.diffs.sources import side_of_file
from git_theta.diffs.store import ObjectReader
from git_theta.storage.errors import ObjectError


def textconv(file: str, out: TextIO) -> None:
    """Write one line per tensor of the checkpoint (or metadata) in ``file``."""
    path = Path(file)
    reader = ObjectReader.for_repository(download=False)  # git log -p must not download anything
    try:
        side = side_of_file(path, path.name, reader)
    except CheckpointError as exc:
        out.write(f"not a checkpoint git-theta can read ({path.stat().st_size} bytes): {exc}\n")
        return
    if side.checkpoint_type is None:
        return  # an empty file: nothing to show
    lines = list(ordered_map(_line, side.items))
    elements = sum(count for _, count in lines)
    out.write(f"checkpoint {side.checkpoint_type}: {len(lines)} tensors, {elements} elements\n")
    out.writelines(line for line, _ in lines)


def _line(item: Item) -> tuple[str, int]:
    """``name  dtype [shape]  statistics  sha256:<first 12 hex digits>``, and the element count."""
    try:
        data = item.load()
    except ObjectError:
        data = None  # the object is not stored locally: the line still names the tensor and its hash
    digest = item.hash or "sha256:" + hashlib.sha256(data).hexdigest()  # type: ignore[arg-type]
    if data is None:
        stats = "(object not stored locally)"
    else:
        summary = summarize(data, item.layout.dtype)
        stats = f"mean {fmt(summary.mean)}  std {fmt(summary.std)}  l2 {fmt(summary.l2)}"
        if summary.nonfinite:
            stats += f"  non-finite {summary.nonfinite}"
        stats += _change_since_previous(item, data)
    return f"{item.name}  {item.layout}  {stats}  {digest[:19]}\n", item.layout.elements


def _change_since_previous(item: Item, data: memoryview) -> str:
    """For a tensor that changed when committed: how it differs from its previous value (if stored locally)."""
    if item.load_previous is None or item.previous_hash is None:
        return ""
    try:
        previous = item.load_previous()
    except ObjectError:
        return ""
    change = compare(previous, data, item.layout.dtype, item.layout.dtype)
    return (
        f"  | since {item.previous_hash[:19]}: changed {change.changed}/{change.elements} ({change.fraction:.2%})"
        f"  l2 {fmt(change.l2)}  rel {fmt(change.rel)}  cos {change.cos:.6f}"
    )
