"""``git theta hook NAME``: the git-theta step of the hooks we install."""

from __future__ import annotations

import sys

import click

from git_theta.git.history import metadata_in_commits
from git_theta.storage.lfs_transfer import push_objects


@click.group(hidden=True)
def hook() -> None:
    """Hook entry points (called by the hook scripts git-theta installs)."""


@hook.command("pre-push")
@click.argument("remote")
@click.argument("url", required=False)
def pre_push(remote: str, url: str | None) -> None:
    """Upload the tensor objects that the pushed commits reference."""
    include = []
    for line in sys.stdin.read().splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[1].strip("0"):
            include.append(fields[1])
    if not include:
        return
    oids = sorted(
        {
            entry.oid
            for _, metadata in metadata_in_commits(include, [f"--remotes={remote}"])
            for entry in metadata.tensors.values()
        }
    )
    if oids:
        click.echo(f"git-theta: uploading tensor objects ({len(oids)} referenced) to {remote}", err=True)
    push_objects(remote, oids)
