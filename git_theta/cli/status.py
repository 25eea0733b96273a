"""``git theta status [PATH...]``: per tracked checkpoint, weights or metadata only, and how many tensors changed."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import click

from git_theta.diffs.status import DELETED, METADATA, UNMERGED, Changes, CheckpointStatus, statuses
from git_theta.errors import UsageError
from git_theta.git.repo import toplevel
from git_theta.git.runner import output


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of one line per checkpoint.")
def status(paths: tuple[str, ...], as_json: bool) -> None:
    """Show each tracked checkpoint: weights or metadata only (lazy), and its changed tensors (not staged, staged)."""
    top = toplevel()
    prefix = output("rev-parse", "--show-prefix")
    pathspecs = [os.path.normpath(prefix + path) if not path.startswith(":") else path for path in paths]
    found = list(statuses(pathspecs, top))
    if paths and not found:
        _explain_no_match(paths)
    if as_json:
        click.echo(json.dumps({item.path: _as_json(item) for item in found}, indent=2))
        return
    if not found:
        click.echo("git-theta: no tracked checkpoints in the index", err=True)
    for item in found:
        click.echo(f"{_shown(item.path, top)}: {describe(item, _shown(item.path, top))}")


def describe(item: CheckpointStatus, shown: str) -> str:
    """One line about one checkpoint (after its path)."""
    if item.worktree == UNMERGED:
        return "unmerged; resolve it with git theta merge --strategy NAME (docs/merges.md)"
    if item.legacy:
        return f"{item.worktree}; Git-Theta 0.2 format, run git theta migrate"
    parts = [_worktree_phrase(item, shown)]
    if item.unstaged:
        parts.append(f"not staged: {_changes_phrase(item.unstaged)}")
    elif item.unstaged is not None:
        parts.append("unchanged since staged")
    if item.staged is None:
        parts.append(f"staged: new checkpoint of {item.tensors} tensors")
    elif item.staged:
        parts.append(f"staged: {_changes_phrase(item.staged)}")
    return "; ".join(parts)


def _worktree_phrase(item: CheckpointStatus, shown: str) -> str:
    if item.worktree == METADATA:
        return f"metadata only, weights not checked out (git theta pull {shlex.quote(shown)})"
    if item.worktree == DELETED:
        return "deleted from the working tree"
    return f"weights checked out ({item.tensors} tensors)"


def _changes_phrase(changes: Changes) -> str:
    counts = [(count, what) for count, what in zip(changes, ("changed", "added", "removed"), strict=True) if count]
    first, what = counts[0]
    words = [f"{first} tensor{'s' if first > 1 else ''} {what}", *(f"{count} {what}" for count, what in counts[1:])]
    return ", ".join(words)


def _as_json(item: CheckpointStatus) -> dict:
    return {
        "worktree": item.worktree,
        "format": "git-theta 0.2" if item.legacy else "git-theta",
        "tensors": item.tensors,
        "not_staged": item.unstaged._asdict() if item.unstaged is not None else None,
        "staged": item.staged._asdict() if item.staged is not None else None,
        "new": item.worktree != UNMERGED and not item.legacy and item.staged is None,
    }


def _shown(path: str, top: Path) -> str:
    """``path`` (from the top of the working tree) as seen from the current directory, as git status shows it."""
    return os.path.relpath(top / path)


def _explain_no_match(paths: tuple[str, ...]) -> None:
    for path in paths:
        if not os.path.lexists(path) and not any(c in path for c in "*?[:"):
            raise UsageError(f"{path}: no such path in the working tree or the index")
    raise UsageError(f"no checkpoint tracked by git-theta in the index matches {' '.join(paths)}")
