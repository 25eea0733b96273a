"""``git theta add PATH...``: ``git add`` for checkpoints, with a choice of checkpoint format and update type."""

from __future__ import annotations

import os
import posixpath
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import click

from git_theta import plugins
from git_theta.errors import UsageError
from git_theta.git.attributes import CHECKPOINT_ATTRIBUTE, check_attr, tracked_by_theta
from git_theta.git.repo import git_dir
from git_theta.git.runner import output, run, split_z
from git_theta.git.staging import one_index_change
from git_theta.session.context import CHECKPOINT_TYPE_ENV, UPDATE_TYPE_ENV
from git_theta.updates.requests import UPDATE_REQUEST_ENV, prepare_request


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--checkpoint-type", help="Read the files as this checkpoint format instead of detecting it.")
@click.option(
    "--update-type",
    help="Commit changed tensors as this update type (low-rank, dora, ia3, sparse, dense, ...): from --update-path, "
    "or inferred exactly from the previous version.",
)
@click.option(
    "--update-path",
    type=click.Path(exists=True, path_type=Path),
    help="The update to commit: a PEFT adapter directory, or a checkpoint of <param>/R, <param>/C, <param>/ia3, "
    "... tensors. The files at PATHS (all the shards of a model) must hold the previous weights; checkout then "
    "gives the updated ones.",
)
def add(paths: tuple[str, ...], checkpoint_type: str | None, update_type: str | None, update_path: Path | None) -> None:
    """Stage checkpoints at PATHS: files, or directories (a sharded model's) of checkpoints tracked by git-theta."""
    _refuse_absent([path for path in paths if not os.path.lexists(path)])
    if update_path is not None and update_type is None:
        raise UsageError("--update-path needs --update-type (for a LoRA adapter: --update-type low-rank)")
    files, checkpoints = _expand(paths)
    env = dict(os.environ)
    if checkpoint_type:
        plugins.load(plugins.CHECKPOINTS, checkpoint_type)
        env[CHECKPOINT_TYPE_ENV] = checkpoint_type
    if update_type:
        plugins.load(plugins.UPDATES, update_type)
        env[UPDATE_TYPE_ENV] = update_type
    # With a new format or update type, already staged files are cleaned again even if git thinks they did not change.
    listed = split_z(run("ls-files", "-z", "--", *files).stdout) if checkpoint_type or update_type else []
    staged = {path for path in listed if os.path.lexists(path)}
    updated: list[str] = []
    with ExitStack() as stack:
        if update_path is not None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="theta-add-", dir=git_dir()))
            updated = _prepare(update_path, update_type or "", checkpoints, checkpoint_type, Path(directory))
            env[UPDATE_REQUEST_ENV] = directory
        env.update(stack.enter_context(one_index_change()))  # the git adds below stage all of it, or nothing
        new = [path for path in files if path not in staged]
        if new:
            _git_add(["--", *new], env)
        if staged:
            _git_add(["--renormalize", "--", *sorted(staged)], env)
    if updated:
        _check_out_again([Path(path) for path in updated])
    if update_path is not None:
        click.echo(
            f"git-theta: staged the {update_type} update of {len(updated)} checkpoint(s) and checked out the "
            "updated weights",
            err=True,
        )


def _refuse_absent(missing: list[str]) -> None:
    """Refuse paths that are neither in the working tree nor in the index (adding a deleted file stages its removal)."""
    staged = set(split_z(run("ls-files", "-z", "--", *missing).stdout)) if missing else set()
    absent = [path for path in missing if path not in staged]
    if absent:
        raise UsageError(f"{absent[0]}: no such file in the working tree; name a checkpoint that is there")


def _expand(paths: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The files to stage (a directory stands for those git would add under it) and the checkpoints among them."""
    files: dict[str, None] = {}
    listings: dict[str, list[str]] = {}
    for path in paths:
        if os.path.isdir(path):
            listing = run("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", path).stdout
            listings[path] = list(dict.fromkeys(split_z(listing)))
            files.update(dict.fromkeys(listings[path]))
        else:
            files[path] = None
    tracked = set(tracked_by_theta(list(files)))
    for path in paths:
        if path not in listings and path not in tracked:
            raise UsageError(
                f"{path} is not tracked by git-theta; run: git theta track '{path}' "
                "(or a pattern that matches it), then add it again"
            )
        if path in listings and not tracked.intersection(listings[path]):
            raise UsageError(
                f"{path} holds no checkpoint tracked by git-theta; run: git theta track '*.safetensors' "
                "(or a pattern that matches its checkpoints), then add it again"
            )
    return list(files), [path for path in files if path in tracked and os.path.isfile(path)]


def _prepare(
    update_path: Path, kind: str, checkpoints: list[str], checkpoint_type: str | None, directory: Path
) -> list[str]:
    """Write the request of each checkpoint's updates for the filter; return the checkpoints that have updates."""
    prefix = output("rev-parse", "--show-prefix")
    by_repo_path = {posixpath.normpath(prefix + Path(os.path.relpath(path)).as_posix()): path for path in checkpoints}
    attributes = check_attr(CHECKPOINT_ATTRIBUTE, list(by_repo_path)) if not checkpoint_type else {}
    types = {
        path: checkpoint_type or (value if value not in ("unspecified", "unset", "set") else None)
        for path, value in {path: attributes.get(path, "unspecified") for path in by_repo_path}.items()
    }
    files = {path: Path(file) for path, file in by_repo_path.items()}
    plan = prepare_request(update_path.resolve(), kind, files, types, directory)
    return [by_repo_path[path] for path, updates in plan.items() if updates]


def _check_out_again(paths: list[Path]) -> None:
    """Replace the working files (the previous weights) with the staged, updated ones, in one checkout.

    git would skip a file whose stat matches the index, so the old files are moved aside first, and put back if the
    checkout fails.
    """
    aside = {path: path.with_name(f".{path.name}.theta-previous") for path in paths}
    for path, moved in aside.items():
        os.replace(path, moved)
    try:
        result = run("checkout", "--", *map(str, paths), check=False, show_stderr=sys.stderr.isatty())
        if result.returncode != 0:
            click.echo((result.stderr or b"").decode(errors="replace"), err=True, nl=False)
            raise SystemExit(result.returncode)
    except BaseException:
        for path, moved in aside.items():
            os.replace(moved, path)
        raise
    for moved in aside.values():
        moved.unlink()


def _git_add(args: list[str], env: dict[str, str]) -> None:
    # At a terminal, git's stderr is ours: the filter's meter shows while it stores a large checkpoint.
    result = run("add", *args, env=env, check=False, show_stderr=sys.stderr.isatty())
    click.echo((result.stderr or b"").decode(errors="replace"), err=True, nl=False)
    if result.returncode != 0:
        raise SystemExit(result.returncode)
