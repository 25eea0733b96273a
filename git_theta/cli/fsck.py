"""``git theta fsck [--remote [NAME]]``: check that every referenced tensor object is there and intact."""

from __future__ import annotations

import click

from git_theta.errors import GitThetaError, UsageError
from git_theta.git.attributes import BINARY
from git_theta.git.repo import default_remote, lfs_storage
from git_theta.maintenance import fsck as checks
from git_theta.storage.objects import LfsObjectStore


class FsckError(GitThetaError):
    """fsck found problems (each already printed on its own line)."""


@click.command()
@click.option(
    "--remote",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[NAME]",
    help="Also check that remote NAME (default: the one downloads use, normally origin) has every referenced object.",
)
def fsck(remote: str | None) -> None:
    """Verify the tensor objects referenced by all refs and the index: present, hash and content intact."""
    if remote == "":
        remote = default_remote()
        if remote is None:
            raise UsageError("this repository has no default remote (origin, remote.lfsdefault); use --remote NAME")
    attributes = checks.attribute_problems()
    usages, problems = checks.referenced()
    problems += checks.local_problems(LfsObjectStore(lfs_storage()), usages)
    for problem in attributes + problems:  # printed before the remote is asked, which may fail
        click.echo(problem)
    if remote is not None:
        remote_problems = checks.remote_problems(remote, usages)
        for problem in remote_problems:
            click.echo(problem)
        problems += remote_problems
    where = f" locally and on remote {remote!r}" if remote is not None else " locally"
    legacy = checks.legacy_paths()
    if legacy:
        click.echo(
            f"git-theta: not checked: {', '.join(legacy)} in Git-Theta 0.2's format (in some commits or the index); "
            "fsck checks only this git-theta's objects ('git theta migrate' stores them in its format going forward)",
            err=True,
        )
    if problems:
        raise FsckError(
            f"fsck found {len(problems)} problem(s) with {len(usages)} referenced object(s); a local object comes "
            "back when a checkpoint that uses it is checked out again (delete a corrupt one first); a remote gets "
            "its missing objects from a clone that has them: git theta push REMOTE --all"
        )
    if attributes:
        raise FsckError(f"{len(attributes)} attributes line(s) lack {BINARY}; each is listed above with what to do")
    click.echo(f"git-theta: {len(usages)} referenced tensor object(s) present and intact{where}")
