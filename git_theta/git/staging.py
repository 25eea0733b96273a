"""Several git commands that stage files, published to the index as one change or not at all."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from git_theta.git.index_lock import take
from git_theta.git.runner import output


@contextmanager
def one_index_change(cwd: str | None = None) -> Iterator[dict[str, str]]:
    """Yield the environment (``GIT_INDEX_FILE``) of a scratch copy of the index; publish it when the block succeeds.

    The index stays locked meanwhile, as git locks it (``index.lock``, gitrepository-layout(5)), so no other git
    command changes it in between; on failure the index is left as it was.
    """
    index = Path(output("rev-parse", "--path-format=absolute", "--git-path", "index", cwd=cwd))
    lock = index.with_name(index.name + ".lock")
    take(lock)
    scratch = index.with_name(index.name + ".theta-add")
    try:
        for stale in (scratch, scratch.with_name(scratch.name + ".lock")):  # left by a killed run; ours alone now
            stale.unlink(missing_ok=True)
        if index.exists():
            shutil.copyfile(index, scratch)
        yield {"GIT_INDEX_FILE": str(scratch)}
        if scratch.exists():
            os.replace(scratch, lock)  # still locked: the lock file now holds the new index
            os.replace(lock, index)
    finally:
        for leftover in (scratch, lock):
            leftover.unlink(missing_ok=True)
