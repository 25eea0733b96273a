"""``git theta add PATH...``: ``git add`` for checkpoints, with a choice of checkpoint format and update type."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from git_theta import plugins
from git_theta.errors import UsageError
from git_theta.git.attributes import tracked_by_theta
from git_theta.git.runner import run, split_z
from git_theta.representations.requested_update import UPDATE_PATH_ENV, UPDATE_TYPE_ENV
from git_theta.session.context import CHECKPOINT_TYPE_ENV


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--checkpoint-type", help="Read the files as this checkpoint format instead of detecting it.")
@click.option(
    "--update-type",
    help="Commit changed tensors as this update type (low-rank, sparse, ia3, dense, ...): from --update-path, "
    "or inferred exactly from the previous version.",
)
@click.option(
    "--update-path",
    type=click.Path(exists=True, path_type=Path),
    help="The update to commit: a PEFT adapter directory, or a checkpoint of <param>/R, <param>/C, <param>/ia3, "
    "... tensors. The file at PATH must hold the previous weights; checkout then gives the updated ones.",
)
def add(paths: tuple[str, ...], checkpoint_type: str | None, update_type: str | None, update_path: Path | None) -> None:
    """Stage checkpoints at PATHS (which must be tracked by git-theta)."""
    untracked = sorted(set(paths) - set(tracked_by_theta(list(paths))))
    _refuse_absent([path for path in paths if not os.path.lexists(path)])
    if untracked:
        raise UsageError(
            f"{untracked[0]} is not tracked by git-theta; run: git theta track '{untracked[0]}' "
            "(or a pattern that matches it), then add it again"
        )
    if update_path is not None and update_type is None:
        raise UsageError("--update-path needs --update-type (for a LoRA adapter: --update-type low-rank)")
    env = dict(os.environ)
    if checkpoint_type:
        plugins.load(plugins.CHECKPOINTS, checkpoint_type)
        env[CHECKPOINT_TYPE_ENV] = checkpoint_type
    if update_type:
        plugins.load(plugins.UPDATES, update_type)
        env[UPDATE_TYPE_ENV] = update_type
        if update_path is not None:
            env[UPDATE_PATH_ENV] = str(update_path.resolve())
    # With a new format or update type, already staged files are cleaned again even if git thinks they did not change.
    staged = set(split_z(run("ls-files", "-z", "--", *paths).stdout)) if checkpoint_type or update_type else set()
    new = [path for path in paths if path not in staged]
    if new:
        _git_add(["--", *new], env)
    if staged:
        _git_add(["--renormalize", "--", *sorted(staged)], env)
    if update_path is not None:
        for path in paths:
            _check_out_again(Path(path))
        click.echo(f"git-theta: staged the {update_type} update and checked out the updated weights", err=True)


def _refuse_absent(missing: list[str]) -> None:
    """Refuse paths that are neither in the working tree nor in the index (adding a deleted file stages its removal)."""
    staged = set(split_z(run("ls-files", "-z", "--", *missing).stdout)) if missing else set()
    absent = [path for path in missing if path not in staged]
    if absent:
        raise UsageError(f"{absent[0]}: no such file in the working tree; name a checkpoint that is there")


def _check_out_again(path: Path) -> None:
    """Replace the working file (the previous weights) with the staged, updated ones.

    git would skip a file whose stat matches the index, so the old file is moved aside first, and put back if the
    checkout fails.
    """
    aside = path.with_name(f".{path.name}.theta-previous")
    os.replace(path, aside)
    try:
        result = run("checkout", "--", str(path), check=False, show_stderr=sys.stderr.isatty())
        if result.returncode != 0:
            click.echo((result.stderr or b"").decode(errors="replace"), err=True, nl=False)
            raise SystemExit(result.returncode)
    except BaseException:
        os.replace(aside, path)
        raise
    aside.unlink()


def _git_add(args: list[str], env: dict[str, str]) -> None:
    # At a terminal, git's stderr is ours: the filter's meter shows while it stores a large checkpoint.
    result = run("add", *args, env=env, check=False, show_stderr=sys.stderr.isatty())
    click.echo((result.stderr or b"").decode(errors="replace"), err=True, nl=False)
    if result.returncode != 0:
        raise SystemExit(result.returncode)
