"""``git theta pull [PATH...]``: download and check out the weights of checkpoints checked out as metadata only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from git_theta.errors import UsageError
from git_theta.git.attributes import tracked_by_theta
from git_theta.git.repo import LAZY_KEY, lfs_storage, toplevel
from git_theta.git.runner import run, split_z
from git_theta.metadata import MAGIC, CheckpointMetadata
from git_theta.storage.lfs_transfer import fetch_objects
from git_theta.storage.objects import LfsObjectStore


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
def pull(paths: tuple[str, ...]) -> None:
    """Materialise checkpoints left as metadata (theta.lazy, GIT_LFS_SKIP_SMUDGE=1): download and check them out."""
    root = toplevel()
    tracked = tracked_by_theta(split_z(run("ls-files", "-z", "--full-name", "--", *paths).stdout), cwd=str(root))
    for path in tracked:
        _put_back_aside(root / path)
    lazy = {path: metadata for path in tracked if (metadata := _metadata_in_worktree(root / path)) is not None}
    if not lazy:
        if paths and not tracked:
            absent = [path for path in paths if not os.path.lexists(path) and not any(c in path for c in "*?[:")]
            if absent:
                raise UsageError(
                    f"no checkpoint tracked by git-theta matches {absent[0]}: there is no such path in the working tree"
                )
            raise UsageError(f"no checkpoint tracked by git-theta matches {' '.join(paths)}")
        click.echo("git-theta: every checkpoint already has its weights", err=True)
        return
    store = LfsObjectStore(lfs_storage())
    needed = {oid: size for metadata in lazy.values() for oid, size in metadata.objects().items() if not store.has(oid)}
    if needed:
        click.echo(f"git-theta: downloading {len(needed)} tensor objects for {len(lazy)} checkpoint(s)", err=True)
        fetch_objects(needed, store)
    for path in lazy:
        _check_out(root, path)
        click.echo(f"git-theta: {path}: weights checked out")


def _aside(target: Path) -> Path:
    return target.with_name(target.name + ".theta-pull")


def _put_back_aside(target: Path) -> None:
    """Undo a pull that was killed during its checkout: the metadata file it moved aside goes back in place.

    What is at ``target`` then is nothing, or a checkpoint that git may not have finished writing; this pull checks
    it out again.
    """
    aside = _aside(target)
    if aside.is_file():
        os.replace(aside, target)


def _check_out(root: Path, path: str) -> None:
    """Check ``path`` out again with its weights; on failure the metadata file is put back as it was."""
    # git skips files whose stat data matches the index, so the metadata file is moved aside first.
    target = root / path
    aside = _aside(target)
    os.replace(target, aside)
    env = {key: value for key, value in os.environ.items() if key != "GIT_LFS_SKIP_SMUDGE"}
    # At a terminal, git's stderr is ours: the filter's meter shows while it writes the checkpoint.
    result = run(
        "-c", f"{LAZY_KEY}=false", "checkout", "-q", "--", path,
        cwd=str(root), env=env, check=False, show_stderr=sys.stderr.isatty(),
    )  # fmt: skip
    if result.returncode != 0 or not target.exists():
        target.unlink(missing_ok=True)
        os.replace(aside, target)
        click.echo((result.stderr or b"").decode(errors="replace"), err=True, nl=False)
        raise SystemExit(result.returncode or 1)
    aside.unlink()


def _metadata_in_worktree(path: Path) -> CheckpointMetadata | None:
    try:
        with open(path, "rb") as handle:
            if handle.read(len(MAGIC)) != MAGIC:
                return None
            handle.seek(0)
            return CheckpointMetadata.loads(handle.read())
    except (FileNotFoundError, IsADirectoryError):
        return None
