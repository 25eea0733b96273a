"""Facts about the current repository: where it is and where its LFS objects live."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

from git_theta.errors import UsageError
from git_theta.git.runner import GitError, finish, output, run, start_side_by_side

if TYPE_CHECKING:
    from pathlib import Path  # imported where a Path is made: the filters work with strings, and pathlib costs ms


def common_dir(cwd: str | None = None) -> Path:
    """Return the repository's common git directory (shared by all worktrees)."""
    from pathlib import Path

    try:
        return Path(output("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=cwd))
    except GitError:
        raise UsageError("not inside a git repository; run this in one (or git init first)") from None


def git_dir(cwd: str | None = None) -> Path:
    """Return this worktree's git directory (where git keeps MERGE_HEAD)."""
    from pathlib import Path

    return Path(output("rev-parse", "--path-format=absolute", "--git-dir", cwd=cwd))


def toplevel(cwd: str | None = None) -> Path:
    """Return the root of the working tree."""
    from pathlib import Path

    try:
        return Path(output("rev-parse", "--show-toplevel", cwd=cwd))
    except GitError:
        raise UsageError(
            "not inside a git working tree; run this in a checkout, not in a bare repository or a .git directory"
        ) from None


#: ``git config theta.lazy true``: check checkpoints out as metadata only, until ``git theta pull``.
LAZY_KEY = "theta.lazy"
#: ``git config theta.maxDeltaDepth N``: how many updates may stack on a tensor before it is stored whole again.
DEPTH_KEY = "theta.maxDeltaDepth"
DEFAULT_DEPTH = 4


class FilterSettings(NamedTuple):
    """The configuration the filters read once per git command (paths as absolute strings)."""

    storage: str
    lazy: bool
    max_delta_depth: int
    #: The index file (``GIT_INDEX_FILE`` when git set one).
    index_file: str
    #: The directory git runs hooks from (``core.hooksPath`` or ``.git/hooks``).
    hooks: str


def lfs_storage(cwd: str | None = None) -> str:
    """Return Git LFS's local storage directory, honouring ``lfs.storage`` as git-lfs does."""
    return filter_settings(cwd).storage


def filter_settings(cwd: str | None = None) -> FilterSettings:
    """Return the LFS storage directory, ``theta.lazy`` and ``theta.maxDeltaDepth``, with one config read."""
    return SettingsQuery(cwd).settings()


class SettingsQuery:
    """The two git commands that read the filter settings, started side by side at once: they run while the caller
    goes on (the filter loads its modules meanwhile); ``settings`` waits for them."""

    def __init__(self, cwd: str | None = None) -> None:
        pattern = r"^(lfs\.storage|theta\.lazy|theta\.maxdeltadepth)$"
        paths_asked = ["--git-common-dir", "--git-path", "index", "--git-path", "hooks"]
        self._started = start_side_by_side(
            ["config", "-z", "--get-regexp", pattern], ["rev-parse", "--path-format=absolute", *paths_asked], cwd=cwd
        )

    def settings(self) -> FilterSettings:
        """The settings, once git has told them."""
        config_process, paths_process = self._started.result()
        config = finish(config_process, check=False)
        try:
            paths = finish(paths_process)  # outside a repository: NotARepositoryError
        except GitError:
            raise UsageError("not inside a git repository; run this in one (or git init first)") from None
        common, index, hooks = paths.stdout.decode("utf-8", errors="surrogateescape").splitlines()
        items = config.stdout.decode("utf-8", errors="surrogateescape").split("\0")
        settings = dict(item.split("\n", 1) for item in items if "\n" in item)
        lazy = settings.get(LAZY_KEY, "false").strip().lower() in ("true", "yes", "on", "1")
        depth = settings.get(DEPTH_KEY.lower(), str(DEFAULT_DEPTH)).strip()
        if not depth.isdigit():
            raise UsageError(f"{DEPTH_KEY} must be a whole number (0 stores every changed tensor whole), not {depth!r}")
        configured = settings.get("lfs.storage", "").strip()
        # git-lfs resolves a relative lfs.storage against the git directory (an absolute one stands as it is)
        storage = os.path.join(common, os.path.expanduser(configured) if configured else "lfs")
        return FilterSettings(storage, lazy, int(depth), index, hooks)


def resolve_tree(rev: str, cwd: str | None = None) -> str | None:
    """Return the tree id of ``rev``, or None when it is not a revision."""
    result = run("rev-parse", "--verify", "--quiet", f"{rev}^{{tree}}", cwd=cwd, check=False)
    return result.stdout.decode().strip() if result.returncode == 0 else None


def default_remote(cwd: str | None = None) -> str | None:
    """Return the remote git-lfs uses by default: ``remote.lfsdefault``, else origin, else the only remote."""
    configured = run("config", "--get", "remote.lfsdefault", cwd=cwd, check=False).stdout.decode().strip()
    if configured:
        return configured
    remotes = run("remote", cwd=cwd).stdout.decode().split()
    if "origin" in remotes:
        return "origin"
    return remotes[0] if len(remotes) == 1 else None
