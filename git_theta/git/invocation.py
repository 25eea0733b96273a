"""Which git command started us: git runs the smudge filter even when it only wants to *show* a diff."""

from __future__ import annotations

import os
from functools import cache

#: Commands that smudge files only to hand them to diff drivers and textconv, never to the working tree.
DISPLAY_COMMANDS = frozenset({"diff", "log", "show", "whatchanged", "diff-tree", "diff-index", "diff-files"})
#: git's global options that take a separate value.
_OPTIONS_WITH_VALUE = frozenset({"-c", "-C", "--git-dir", "--work-tree", "--namespace", "--config-env"})


@cache
def parent_git_command() -> str | None:
    """Return the subcommand of the git process that started us (``diff``, ``checkout``...), if it can be read."""
    found = _parent_git()
    return _subcommand(found[1][1:]) if found else None


@cache
def parent_git_identity() -> str | None:
    """Name the git process that started us, uniquely over time (pid and start time), if it can be read.

    git starts one merge driver per file: this tells the drivers of one ``git merge`` apart from another's.
    """
    found = _parent_git()
    start = _stat_fields(found[0])[19:20] if found else []  # starttime, the 22nd field of /proc/PID/stat
    return f"{found[0]}@{start[0]}" if found and start else None


def parent_git_arguments() -> list[str]:
    """The arguments of the git process that started us that follow its subcommand ([] if it cannot be read)."""
    found = _parent_git()
    if not found:
        return []
    args = found[1][1:]
    command = _subcommand(args)
    return args[args.index(command) + 1 :] if command else []


def _parent_git() -> tuple[int, list[str]] | None:
    pid = os.getppid()
    for _ in range(3):  # git may start us through ``sh -c``
        argv = _cmdline(pid)
        if argv and os.path.basename(argv[0]) in ("git", "git.exe"):
            return pid, argv
        if not argv or os.path.basename(argv[0]) not in ("sh", "dash", "bash"):
            return None
        pid = _parent_of(pid)
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace").rstrip("\0").split("\0")
    except OSError:
        return []  # not Linux, or no /proc: assume the weights are needed


def _parent_of(pid: int) -> int:
    fields = _stat_fields(pid)
    try:
        return int(fields[1])
    except (ValueError, IndexError):
        return 0


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...), or [] if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _subcommand(args: list[str]) -> str | None:
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def only_displaying() -> bool:
    """Tell whether git started us only to display a diff (so checkpoints need not be rebuilt)."""
    return parent_git_command() in DISPLAY_COMMANDS
