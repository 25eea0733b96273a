"""Holding git's index lock, so that no git command stages files (and so writes tensor objects) meanwhile."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from git_theta.errors import GitThetaError


class LockedError(GitThetaError):
    """Another git command holds the index lock."""


def take(lock: Path) -> None:
    """Create git's lock file ``lock`` as git does (exclusively), or say that another git command holds it."""
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        raise LockedError(
            f"another git command is running in this repository ({lock} exists); wait for it to finish "
            "(or, if a git command crashed, remove that file) and run this again"
        ) from None


@contextmanager
def index_locks(common_dir: Path) -> Iterator[None]:
    """Hold ``index.lock`` of the main worktree and of every linked worktree, as ``git add`` does."""
    held: list[Path] = []
    try:
        for directory in [common_dir, *sorted(common_dir.glob("worktrees/*/"))]:
            lock = directory / "index.lock"
            take(lock)
            held.append(lock)
        yield
    finally:
        for lock in held:
            lock.unlink(missing_ok=True)
