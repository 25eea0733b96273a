"""``git theta add PATH...``: ``git add`` for checkpoints, with a choice of checkpoint format."""

from __future__ import annotations

import os

import click

from git_theta import plugins
from git_theta.errors import UsageError
from git_theta.filters.context import CHECKPOINT_TYPE_ENV
from git_theta.git.attributes import tracked_by_theta
from git_theta.git.runner import run, split_z


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--checkpoint-type", help="Read the files as this checkpoint format instead of detecting it.")
def add(paths: tuple[str, ...], checkpoint_type: str | None) -> None:
    """Stage checkpoints at PATHS (which must be tracked by git-theta)."""
    untracked = sorted(set(paths) - set(tracked_by_theta(list(paths))))
    if untracked:
        raise UsageError(
            f"{untracked[0]} is not tracked by git-theta; run: git theta track '{untracked[0]}' "
            "(or a pattern that matches it), then add it again"
        )
    env = dict(os.environ)
    staged: set[str] = set()
    if checkpoint_type:
        plugins.load(plugins.CHECKPOINTS, checkpoint_type)
        env[CHECKPOINT_TYPE_ENV] = checkpoint_type
        staged = set(split_z(run("ls-files", "-z", "--", *paths).stdout))
    new = [path for path in paths if path not in staged]
    if new:
        _git_add(["--", *new], env)
    if staged:
        # Already staged files are re-cleaned even when git thinks they did not change, so the new type applies.
        _git_add(["--renormalize", "--", *sorted(staged)], env)


def _git_add(args: list[str], env: dict[str, str]) -> None:
    result = run("add", *args, env=env, check=False)
    click.echo(result.stderr.decode(errors="replace"), err=True, nl=False)
    if result.returncode != 0:
        raise SystemExit(result.returncode)
