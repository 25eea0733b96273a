"""``git theta gc [--dry-run]``: remove local tensor objects that nothing references any more."""

from __future__ import annotations

import click

from git_theta.git.repo import common_dir, lfs_storage
from git_theta.maintenance.gc import collect_garbage
from git_theta.storage.objects import LfsObjectStore


@click.command()
@click.option("-n", "--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def gc(dry_run: bool) -> None:
    """Remove tensor objects that no commit, reflog entry, stash or index references, and stale temporary files."""
    result = collect_garbage(LfsObjectStore(lfs_storage()), common_dir(), dry_run)
    if dry_run:
        for oid, size in result.objects:
            click.echo(f"would remove {oid} ({size} bytes)")
        for path, size in result.temporaries:
            click.echo(f"would remove {path} ({size} bytes)")
    verb = "would remove" if dry_run else "removed"
    if result.temporaries:
        size = sum(size for _, size in result.temporaries)
        click.echo(
            f"git-theta: {verb} {len(result.temporaries)} stale temporary file(s) of failed writes, {size} bytes"
        )
    click.echo(
        f"git-theta: {verb} {len(result.objects)} unreferenced tensor object(s), {result.size} bytes; "
        f"kept {result.kept} referenced object(s)"
    )
