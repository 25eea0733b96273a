"""Our git hooks, installed beside other tools' hooks (git-lfs installs some) and never over them.

A hook that another tool installed is kept as ``<hook>.theta-chained``; our hook runs it first, with the same
arguments and input, and stops when it fails. ``core.hooksPath`` is honoured because git resolves the hooks
directory for us (``git rev-parse --git-path hooks``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from git_theta.git.runner import output

if TYPE_CHECKING:
    from pathlib import Path  # every filter imports this module: pathlib is imported only to write hooks

MARKER = "# git-theta hook"
CHAIN_SUFFIX = ".theta-chained"
HOOKS = ("pre-push",)

_TEMPLATE = """#!/bin/sh
{marker}: runs the hook it was installed beside ({name}{suffix}), then git-theta's own step.
# Without such a hook, git-lfs's own step runs when git-lfs is configured, so plain LFS files are pushed too.
input=$(cat; echo x)
input=${{input%x}}
chained="$(dirname "$0")/{name}{suffix}"
if [ -x "$chained" ]; then
  printf '%s' "$input" | "$chained" "$@" || exit $?
elif [ -n "$(git config --get filter.lfs.process)" ] && command -v git-lfs >/dev/null 2>&1; then
  printf '%s' "$input" | git lfs {name} "$@" || exit $?
fi
if [ -x {program} ]; then
  printf '%s' "$input" | {command} hook {name} "$@"
elif command -v git-theta >/dev/null 2>&1; then
  printf '%s' "$input" | git-theta hook {name} "$@"
else
  echo >&2 "git-theta is neither at "{program}" nor on PATH; this {name} hook needs it (pip install git-theta)."
  exit 2
fi
"""


def hooks_dir() -> Path:
    """Return the directory git runs hooks from (``core.hooksPath`` or ``.git/hooks``)."""
    from pathlib import Path

    return Path(output("rev-parse", "--path-format=absolute", "--git-path", "hooks"))


def is_ours(path: str | os.PathLike[str]) -> bool:
    """Tell whether the hook at ``path`` was written by git-theta."""
    try:
        with open(path, encoding="utf-8", errors="replace") as hook:
            return MARKER in hook.read()
    except OSError:
        return False


def ensure_hooks(directory: str | None = None) -> None:
    """Install our hooks in ``directory`` (by default git's hooks directory) if this repository lacks them (a fresh
    clone): as git-lfs does from its filter."""
    folder = directory or os.fspath(hooks_dir())
    if not all(is_ours(os.path.join(folder, name)) for name in HOOKS):
        from pathlib import Path

        install_hooks(Path(folder))


def install_hooks(directory: Path | None = None) -> list[str]:
    """Install our hooks in ``directory`` (by default git's hooks directory), keeping any existing hook as a
    chained one; return the hooks written."""
    directory = directory or hooks_dir()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in HOOKS:
        path = directory / name
        if path.exists() and not is_ours(path):
            os.replace(path, directory / (name + CHAIN_SUFFIX))
        text = _hook_text(name)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            _write_executable(directory / name, text)
            written.append(name)
    return written


def _hook_text(name: str) -> str:
    """The hook ``name``, running this git-theta by its absolute path (else whichever is on PATH)."""
    import shlex  # every filter imports this module; it writes hooks once per clone

    from git_theta.git.command import theta_words

    words = theta_words()
    return _TEMPLATE.format(
        marker=MARKER, name=name, suffix=CHAIN_SUFFIX, program=shlex.quote(words[0]), command=shlex.join(words)
    )


def _write_executable(path: Path, text: str) -> None:
    """Write a hook atomically; a failed write (a full disk) leaves neither a half hook nor its temporary file."""
    tmp = path.with_name(path.name + ".theta-tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def uninstall_hooks() -> list[str]:
    """Remove our hooks and put back the hooks they chained to; return the hooks removed."""
    directory = hooks_dir()
    removed = []
    for name in HOOKS:
        path, chained = directory / name, directory / (name + CHAIN_SUFFIX)
        if is_ours(path):
            path.unlink()
            removed.append(name)
            if chained.exists():
                os.replace(chained, path)
    return removed
