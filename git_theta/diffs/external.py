"""The external diff driver (``diff.theta.command``): git's arguments in, per-tensor statistics out.

git calls it as ``path old-file old-hex old-mode new-file new-hex new-mode`` (two more, the new path and a rename
message, for renames; the path alone for an unmerged file). git has already written each side to a temp file in its
working tree form, but we read the metadata blobs by their ids instead and decode only the tensors that changed. A
side whose id is all zeros is the working tree file, read and hashed tensor by tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from git_theta.diffs.compare import Side, diff_sides
from git_theta.diffs.render import patch
from git_theta.diffs.sides import side_of_bytes, side_of_file
from git_theta.diffs.store import ObjectReader
from git_theta.errors import UsageError
from git_theta.git.catfile import BlobReader
from git_theta.metadata import MetadataError

NULL = "/dev/null"


def external_diff(args: list[str], out: TextIO) -> None:
    """Write the comparison git asked for, as diff-like text."""
    if len(args) == 1:
        out.write(f"* Unmerged path {args[0]}\n")
        return
    if len(args) not in (7, 9):
        raise UsageError(f"the diff driver takes git's 7 or 9 arguments, not {len(args)} (it is run by git diff)")
    path, old_file, old_hex, _, new_file, new_hex, _ = args[:7]
    new_path = args[7] if len(args) == 9 else path
    reader = ObjectReader.for_repository()
    try:
        with BlobReader() as blobs:
            old = _side(old_file, old_hex, path, blobs, reader, None)
            new = _side(new_file, new_hex, new_path, blobs, reader, old.checkpoint_type)
            diff = diff_sides(new_path, old, new)
    except MetadataError as exc:  # one bad commit must not stop git diff or git log -p --ext-diff
        out.write(f"diff --theta a/{path} b/{new_path}\n@@ malformed git-theta metadata, tensors not shown: {exc} @@\n")
        return
    text = patch(diff, path, new_path, old_file != NULL, new_file != NULL)
    if len(args) == 9 and args[8]:
        head, _, rest = text.partition("\n")
        text = f"{head}\n{args[8].rstrip()}\n{rest}"
    out.write(text)


def _side(file: str, hex_id: str, path: str, blobs: BlobReader, reader: ObjectReader, fallback: str | None) -> Side:
    if file == NULL:
        return Side.absent()
    data = blobs.read(hex_id) if hex_id.strip("0") else None
    if data is None:  # the working tree file (git gives its path) or, failing the blob, git's temp file
        return side_of_file(Path(file), path, reader, fallback)
    return side_of_bytes(data, path, reader, fallback)
