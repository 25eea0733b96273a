"""``git theta hook NAME``: the git-theta step of the hooks we install."""

from __future__ import annotations

import sys

import click

from git_theta.git.reachability import metadata_in_commits
from git_theta.git.repo import lfs_storage
from git_theta.storage.lfs_transfer import TransferError, push_objects
from git_theta.storage.objects import LfsObjectStore
from git_theta.storage.remote_objects import missing_on_remote


@click.group(hidden=True)
def hook() -> None:
    """Hook entry points (called by the hook scripts git-theta installs)."""


@hook.command("pre-push")
@click.argument("remote")
@click.argument("url", required=False)
def pre_push(remote: str, url: str | None) -> None:
    """Upload the tensor objects that the pushed commits reference; fail the push if any cannot be."""
    include = [fields[1] for fields in map(str.split, sys.stdin.read().splitlines()) if len(fields) == 4]
    include = [commit for commit in include if commit.strip("0")]  # all zeros: a deleted ref
    if not include:
        return
    objects = {
        oid: size
        for _, metadata in metadata_in_commits(include, [f"--remotes={remote}"])
        for oid, size in metadata.objects().items()
    }
    store = LfsObjectStore(lfs_storage())
    local = sorted(oid for oid in objects if store.has(oid))
    _require_remote_has({oid: size for oid, size in objects.items() if not store.has(oid)}, remote)
    if local:
        click.echo(f"git-theta: uploading tensor objects ({len(local)} referenced) to {remote}", err=True)
    push_objects(remote, local)


def _require_remote_has(absent: dict[str, int], remote: str) -> None:
    """Objects a lazy checkout never downloaded can be pushed only if the remote already has them."""
    if not absent:
        return
    lacking = missing_on_remote(remote, absent)
    if lacking:
        raise TransferError(
            f"{len(lacking)} tensor object(s) that the pushed commits reference are neither stored here nor on "
            f"{remote!r} (first: {sorted(lacking)[0][:12]}); download them first (git theta pull) and push again",
            sorted(lacking),
        )
