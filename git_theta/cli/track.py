"""``git theta track [PATTERN...]``: hand matching files to git-theta through .gitattributes, or list the patterns."""

from __future__ import annotations

import os

import click

from git_theta.git import hooks, repo
from git_theta.git.tracking import BINARY, add_tracking, tracking_lines


@click.command()
@click.argument("patterns", nargs=-1)
def track(patterns: tuple[str, ...]) -> None:
    """Track files matching PATTERNS (gitattributes patterns, e.g. '*.safetensors') with git-theta.

    Without PATTERNS, list the tracked patterns and the attributes file of each.
    """
    root = repo.toplevel()
    if not patterns:
        _list_patterns()
        return
    added, upgraded = add_tracking(root, list(patterns))
    for line in upgraded:
        click.echo(f"git-theta: {line!r} upgraded: {BINARY} added, so git never converts its line endings")
    for pattern in patterns:
        state = "now tracked" if pattern in added else "already tracked"
        click.echo(f"git-theta: {pattern!r} {state} (in {root / '.gitattributes'})")
    hooks.install_hooks()


def _list_patterns() -> None:
    """One line per tracking line: its pattern, then the file and line that hold it."""
    lines = tracking_lines()
    if not lines:
        click.echo("git-theta: no tracked patterns; track some with: git theta track '*.safetensors'", err=True)
        return
    width = max(len(line.text.split()[0]) for line in lines)
    for line in lines:
        click.echo(f"{line.text.split()[0]:<{width}}  ({os.path.relpath(line.path)}:{line.number})")
