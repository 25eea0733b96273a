"""``git theta fsck [--remote [NAME]]``: check that every referenced tensor object is there and intact."""

from __future__ import annotations

import click

from git_theta.errors import GitThetaError, UsageError
from git_theta.git.repo import default_remote, lfs_storage
from git_theta.git.tracking import BINARY
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
    """Verify the tensor objects referenced by all refs and the index: present, hash and content intact.

    An object that is not stored here but that the default remote has is not downloaded yet (a lazy clone), not lost.
    """
    explicit = remote is not None
    if remote == "":
        remote = default_remote()
        if remote is None:
            raise UsageError("this repository has no default remote (origin, remote.lfsdefault); use --remote NAME")
    attributes = checks.attribute_problems()
    usages, problems = checks.referenced()
    store = LfsObjectStore(lfs_storage())
    absent = checks.absent(store, usages)
    problems += checks.local_problems(store, usages, skip=absent)
    for problem in attributes + problems:  # printed before the remote is asked, which may fail
        click.echo(problem)
    remote = remote if explicit else default_remote()
    found = _absent_and_remote(remote, usages, absent, explicit)
    problems += found.problems
    if found.on_remote:
        click.echo(
            f"git-theta: {found.on_remote} referenced object(s) not downloaded yet; remote {remote!r} has them "
            "(git theta pull, or a checkout, downloads them)"
        )
    where = f" locally and on remote {remote!r}" if explicit else " locally"
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
    later_note = f"; {found.on_remote} more not downloaded yet" if found.on_remote else ""
    click.echo(
        f"git-theta: {len(usages) - found.on_remote} referenced tensor object(s) present and intact{where}{later_note}"
    )


def _absent_and_remote(remote: str | None, usages: dict, absent: list[str], explicit: bool) -> checks.Absent:
    """Print and return the problems of objects not stored here and, with ``explicit``, of those the remote lacks."""
    lacking, why = _ask(remote, usages, list(usages) if explicit else absent, explicit)
    found = checks.sort_absent(absent, usages, remote, lacking, why)
    if explicit and lacking and remote is not None:
        skip = set(absent)
        found.problems.extend(
            checks.remote_problems(remote, usages, {o: w for o, w in lacking.items() if o not in skip})
        )
    for problem in found.problems:
        click.echo(problem)
    return found


def _ask(remote: str | None, usages: dict, oids: list[str], explicit: bool) -> tuple[dict[str, str] | None, str]:
    """Which of ``oids`` ``remote`` lacks, or None and why not when it cannot be asked (an error with --remote)."""
    if remote is None or not oids:
        return ({} if remote is not None else None), ""
    try:
        return checks.lacking_on_remote(remote, usages, oids), ""
    except GitThetaError as exc:
        if explicit:
            raise
        return None, str(exc)
