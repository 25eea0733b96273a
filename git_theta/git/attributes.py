"""Reading git attributes and writing the tracking lines of .gitattributes."""

from __future__ import annotations

import os
from pathlib import Path

from git_theta.git.runner import run

TRACK_ATTRIBUTES = "filter=theta diff=theta merge=theta"
#: A gitattribute that names a file's checkpoint format, e.g. ``*.ckpt filter=theta theta-checkpoint=torch``.
CHECKPOINT_ATTRIBUTE = "theta-checkpoint"


def check_attr(attribute: str, paths: list[str], cwd: str | None = None) -> dict[str, str]:
    """Return ``{path: value}`` of one attribute for many paths (value is 'unspecified' when unset)."""
    if not paths:
        return {}
    data = "\0".join(paths).encode("utf-8", errors="surrogateescape") + b"\0"
    out = run("check-attr", "-z", "--stdin", attribute, input=data, cwd=cwd).stdout
    fields = out.decode("utf-8", errors="surrogateescape").split("\0")
    return {fields[i]: fields[i + 2] for i in range(0, len(fields) - 2, 3)}


def tracked_by_theta(paths: list[str], cwd: str | None = None) -> list[str]:
    """Return those of ``paths`` that git hands to the theta filter."""
    return [path for path, value in check_attr("filter", paths, cwd).items() if value == "theta"]


def escape_pattern(pattern: str) -> str:
    """Escape a pattern for .gitattributes, where whitespace separates fields (as git-lfs does)."""
    return pattern.replace(" ", "[[:space:]]")


def add_tracking(root: Path, patterns: list[str]) -> list[str]:
    """Append a tracking line per new pattern to ``root/.gitattributes``; return the patterns added."""
    path = root / ".gitattributes"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    present = {tuple(line.split()) for line in text.splitlines()}
    added = []
    for pattern in patterns:
        line = f"{escape_pattern(pattern)} {TRACK_ATTRIBUTES}"
        if tuple(line.split()) not in present:
            added.append(pattern)
            present.add(tuple(line.split()))
            text += ("" if not text or text.endswith("\n") else "\n") + line + "\n"
    if added:
        _write_atomic(path, text)
    return added


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".theta-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
