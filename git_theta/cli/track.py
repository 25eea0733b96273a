"""``git theta track PATTERN...``: hand matching files to git-theta through .gitattributes."""

from __future__ import annotations

import click

from git_theta.git import hooks, repo
from git_theta.git.attributes import BINARY, add_tracking


@click.command()
@click.argument("patterns", nargs=-1, required=True)
def track(patterns: tuple[str, ...]) -> None:
    """Track files matching PATTERNS (gitattributes patterns, e.g. '*.safetensors') with git-theta."""
    root = repo.toplevel()
    added, upgraded = add_tracking(root, list(patterns))
    for line in upgraded:
        click.echo(f"git-theta: {line!r} upgraded: {BINARY} added, so git never converts its line endings")
    for pattern in patterns:
        state = "now tracked" if pattern in added else "already tracked"
        click.echo(f"git-theta: {pattern!r} {state} (in {root / '.gitattributes'})")
    hooks.install_hooks()
