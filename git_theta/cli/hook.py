"""``git theta hook NAME``: the git-theta step of the hooks we install."""

from __future__ import annotations

import sys

import click

from git_theta.git.reachability import advertised, existing_commits, needed_objects
from git_theta.git.repo import lfs_storage
from git_theta.storage.objects import LfsObjectStore
from git_theta.storage.remote_objects import upload_missing


@click.group(hidden=True)
def hook() -> None:
    """Hook entry points (called by the hook scripts git-theta installs)."""


@hook.command("pre-push")
@click.argument("remote")
@click.argument("url", required=False)
def pre_push(remote: str, url: str | None) -> None:
    """Upload the tensor objects that the pushed commits need and the remote lacks; fail the push if any cannot be."""
    # Each line: <local ref> <local sha> <remote ref> <remote sha>, all zeros for a ref deleted or created.
    updates = [(fields[1], fields[3]) for fields in map(str.split, sys.stdin.read().splitlines()) if len(fields) == 4]
    include = [local for local, _ in updates if local.strip("0")]
    if not include:
        return
    objects = needed_objects(include, _remote_commits([old for _, old in updates], url or remote))
    result = upload_missing(remote, objects, LfsObjectStore(lfs_storage()), progress=sys.stderr.isatty())
    if result.sent and result.asked:  # otherwise git-lfs decided what to send, and said so
        sent = f"{len(result.sent)} tensor object(s), {result.size} bytes"
        click.echo(f"git-theta: uploaded {sent}, to {remote}", err=True)


def _remote_commits(old: list[str], url: str) -> list[str]:
    """The commits the remote has (as far as this repository has them too): what need not be looked at again."""
    known = [sha for sha in old if sha.strip("0")]
    if len(known) < len(old):
        # A new ref comes with no old value. Remote-tracking refs are no substitute: after `git remote set-url`
        # they describe another repository. So ask the remote for its refs, as git itself just did.
        known += advertised(url)
    return existing_commits(known)
