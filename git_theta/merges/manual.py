"""``GIT_THETA_MANUAL_MERGE=1``: the three versions of a conflicting checkpoint written out for a hand merge."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from git_theta.session.context import Session


def version_path(path: str, label: str) -> str:
    """``model.safetensors`` -> ``model.ours.safetensors``: the label before the extension keeps the format clear."""
    stem, ext = os.path.splitext(path)
    return f"{stem}.{label}{ext}"


def write_versions(path: str, versions: dict[str, bytes], context: Session) -> list[str]:
    """Write each version (given as metadata) as a checkpoint next to ``path``; return the files written."""
    from git_theta.filters.smudge import smudge

    written = []
    for label, data in versions.items():
        if not data:
            continue
        target = Path(version_path(path, label))
        write = smudge(data, path, context)
        temporary = target.with_name(target.name + ".theta-tmp")
        try:
            with open(temporary, "wb") as out:
                write(out)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)  # a full disk must not leave a half-written checkpoint behind
            raise
        written.append(str(target))
    return written
