"""``git theta untrack PATTERN...``: stop handing matching files to git-theta (the reverse of ``git theta track``)."""

from __future__ import annotations

import click

from git_theta.git import repo
from git_theta.git.attributes import tracked_by_theta
from git_theta.git.runner import run, split_z
from git_theta.git.tracking import remove_tracking


@click.command()
@click.argument("patterns", nargs=-1, required=True)
def untrack(patterns: tuple[str, ...]) -> None:
    """Remove PATTERNS from the top-level .gitattributes (git theta track lists the tracked patterns)."""
    root = repo.toplevel()
    staged = split_z(run("ls-files", "-z", "--full-name", cwd=str(root)).stdout)
    before = set(tracked_by_theta(staged, cwd=str(root)))
    remove_tracking(root, list(patterns))
    for pattern in patterns:
        click.echo(f"git-theta: {pattern!r} no longer tracked (removed from {root / '.gitattributes'})")
    left = sorted(before - set(tracked_by_theta(staged, cwd=str(root))))
    if left:
        more = f" and {len(left) - 1} more" if len(left) > 1 else ""
        click.echo(
            f"git-theta: {left[0]}{more} stay stored as git-theta metadata in the index and in commits until added "
            f"again (git add --renormalize -- {left[0]}); git theta track the pattern again to undo this",
            err=True,
        )
