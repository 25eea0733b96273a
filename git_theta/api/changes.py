"""``diff``: what ``git theta diff --format json`` prints, as Python data."""

from __future__ import annotations

import json
import os
import posixpath
from typing import Any

from git_theta.api.checkpoint import repository_root
from git_theta.diffs.render import SORT_KEYS, as_json
from git_theta.diffs.targets import choose_targets, compare_targets
from git_theta.errors import UsageError


def diff(
    rev_a: str,
    rev_b: str | None = None,
    path: str | None = None,
    *,
    repo: str | os.PathLike[str] = ".",
    sort: str = "order",
    threshold: float = 0.0,
) -> dict[str, Any]:
    """Compare the tracked checkpoints (or the one at ``path``, relative to the repository root) between two revisions,
    or ``rev_a`` and the working tree when ``rev_b`` is None; return the records ``--format json`` gives."""
    if sort not in SORT_KEYS:
        raise UsageError(f"unknown sort {sort!r} (choose one of: {', '.join(SORT_KEYS)})")
    top = repository_root(repo)
    old, new = choose_targets([rev for rev in (rev_a, rev_b) if rev is not None], False, str(top))
    paths = [posixpath.normpath(path.replace(os.sep, "/")).strip("/") or "."] if path else []
    diffs = compare_targets(old, new, paths, top)
    return json.loads(as_json(diffs, (old.label, new.label), sort, threshold))
