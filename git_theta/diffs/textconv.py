"""The textconv driver (``diff.theta.textconv``): one side of a checkpoint as one readable line per tensor.

``git log -p`` and ``git show`` (and ``git diff --no-ext-diff``) diff these lines. A tensor's line names it, its dtype
and shape and the start of its hash, so any change, however small, shows as a ``-`` and a ``+`` line, and an
unchanged tensor's line is the same on both sides. A tensor that changed when it was committed also shows how it
changed since its previous value (which its metadata names): the number and fraction of changed elements, the L2
norm of the change, the change relative to the previous norm, the cosine and the new norm; a summary line adds
these up. In ``git log -p`` and ``git show`` that is the commit's own change.

Only those changed tensors are decoded (two objects each), so a commit costs what it changed, not the model's size.
git hands us the file in its working tree form; when the git command is ``log``, ``show`` or ``diff`` (or checkouts
skip the weights) that is the metadata. A checkpoint file (``git diff --no-ext-diff`` of the working tree) is read
and hashed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from git_theta.checkpoints.base import CheckpointError
from git_theta.diffs.compare import Item, compare_values, since_previous
from git_theta.diffs.numeric import compare_pairs
from git_theta.diffs.parallel import ordered_map
from git_theta.diffs.result import Change, fmt
from git_theta.diffs.sides import side_of_file
from git_theta.diffs.store import ObjectReader
from git_theta.metadata import MetadataError
from git_theta.storage.errors import ObjectError


@dataclass(frozen=True)
class _Line:
    """One tensor's line, its element count, and its change since its previous value (None if not known)."""

    text: str
    elements: int
    change: Change | None


def textconv(file: str, out: TextIO) -> None:
    """Write the header, the summary of the change made when committed, and one line per tensor of ``file``."""
    path = Path(file)
    reader = ObjectReader.for_repository(download=False)  # git log -p must not download anything
    try:
        side = side_of_file(path, path.name, reader)
    except CheckpointError as exc:
        out.write(f"not a checkpoint git-theta can read ({path.stat().st_size} bytes): {exc}\n")
        return
    except MetadataError as exc:  # one bad commit must not stop git log -p
        out.write(f"malformed git-theta metadata, tensors not shown: {exc}\n")
        return
    if side.checkpoint_type is None:
        return  # an empty file: nothing to show
    lines = list(ordered_map(_line, side.items))
    out.write(f"checkpoint {side.checkpoint_type}: {len(lines)} tensors, {sum(x.elements for x in lines)} elements\n")
    out.write(_summary(lines))
    out.writelines(line.text for line in lines)


def _summary(lines: list[_Line]) -> str:
    """The change recorded when this side was committed, over all its changed tensors; '' if none is recorded."""
    changes = [line.change for line in lines if line.change is not None]
    if not changes:
        return ""
    elements = sum(change.changed for change in changes)
    delta = math.sqrt(sum(change.l2 * change.l2 for change in changes))
    return (
        f"changed when committed: {len(changes)} of {len(lines)} tensors, {elements} elements, ||delta|| {fmt(delta)};"
        f" the other {len(lines) - len(changes)} unchanged or new\n"
    )


def _line(item: Item) -> _Line:
    """``name  dtype [shape]  sha256:<first 12 hex digits>``, then the change since the previous value if recorded."""
    encoded = f" ({item.encoding} blocks)" if item.encoding else ""
    text = f"{item.name}  {item.layout}{encoded}  {item.digest()[:19]}"
    change = None
    if item.load_previous is not None and item.previous_hash is not None:
        text += f"  | since {item.previous_hash[:19]}: "
        try:
            change = _since_previous(item)
        except ObjectError:
            text += "(not computed: its objects are not stored locally)"
        else:
            text += _described(change, item)
    return _Line(text + "\n", item.layout.elements, change)


def _since_previous(item: Item) -> Change | None:
    """The change from the item's previous value: encoded tensors decoded whole, the others streamed."""
    if item.encoding is None:
        return compare_pairs(since_previous(item), item.layout.dtype, item.layout.dtype)
    assert item.load_previous is not None  # only items with a previous value get here
    return compare_values(item.values(item.load_previous()), item.values(item.load()))


def _described(change: Change | None, item: Item) -> str:
    if change is None:  # an encoded tensor whose values cannot be decoded here
        return f"changed ({item.encoding} blocks, not decoded: the plugin's decoder is not available)"
    return (
        f"changed {change.changed}/{change.elements} ({change.fraction:.2%})  l2 {fmt(change.l2)}"
        f"  rel {fmt(change.rel)}  cos {change.cos:.6f}  norm {fmt(change.new_norm)}"
    )
