"""``git theta push [REMOTE] [REF...|--all]``: upload every tensor object the refs need that the remote lacks."""

from __future__ import annotations

import sys

import click

from git_theta.errors import UsageError
from git_theta.git import config
from git_theta.git.lfs_env import lfs_endpoint
from git_theta.git.reachability import needed_objects
from git_theta.git.repo import lfs_storage
from git_theta.git.runner import output, run
from git_theta.storage.objects import LfsObjectStore
from git_theta.storage.remote_objects import upload_missing


@click.command()
@click.argument("remote", required=False)
@click.argument("refs", nargs=-1)
@click.option("--all", "all_refs", is_flag=True, help="Every local branch and tag.")
def push(remote: str | None, refs: tuple[str, ...], all_refs: bool) -> None:
    """Upload the tensor objects that REFs (default: the current branch) need and REMOTE lacks; push no commits.

    For a remote whose LFS storage lacks objects that its commits need: after `git remote set-url` to a new
    server, or when its Git repository was copied without its LFS objects.
    """
    if all_refs and refs:
        raise UsageError("give refs or --all, not both")
    remote = remote or _push_remote()
    lfs_endpoint(remote)  # an unknown remote is a mistake, not a URL to hand to git-lfs
    revisions = _local_refs() if all_refs else [_verified(ref) for ref in refs] or [_current()]
    objects = needed_objects(revisions, []) if revisions else {}
    result = upload_missing(remote, objects, LfsObjectStore(lfs_storage()), progress=sys.stderr.isatty())
    if not result.asked:
        click.echo(f"git-theta: handed {len(result.sent)} object(s) to git-lfs, which sent those {remote} lacked")
        return
    click.echo(
        f"git-theta: uploaded {len(result.sent)} object(s), {result.size} bytes, to {remote}; "
        f"{result.present} already there"
    )


def _push_remote() -> str:
    """The remote ``git push`` would use: branch.<name>.pushRemote, remote.pushDefault, branch.<name>.remote, origin."""
    branch = run("symbolic-ref", "--quiet", "--short", "HEAD", check=False).stdout.decode().strip()
    keys = [f"branch.{branch}.pushRemote", "remote.pushDefault", f"branch.{branch}.remote"] if branch else []
    for key in keys or ["remote.pushDefault"]:
        value = config.get(key)
        if value and value != ".":  # "." is the repository itself
            return value
    return "origin"


def _current() -> str:
    """The current branch, or HEAD when it is detached."""
    if run("rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode != 0:
        raise UsageError("the current branch has no commits yet; commit first, or name refs to push")
    return run("symbolic-ref", "--quiet", "HEAD", check=False).stdout.decode().strip() or "HEAD"


def _verified(ref: str) -> str:
    """``ref`` if it names an object here; otherwise a usage error."""
    if ref.startswith("-") or run("rev-parse", "--verify", "--quiet", ref, check=False).returncode != 0:
        raise UsageError(f"{ref!r} is not a branch, tag or commit of this repository; name one that is")
    return ref


def _local_refs() -> list[str]:
    """Every local branch and tag."""
    return output("for-each-ref", "--format=%(refname)", "refs/heads", "refs/tags").splitlines()
