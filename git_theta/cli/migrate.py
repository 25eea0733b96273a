"""``git theta migrate [PATH...] [--commit]``: checkpoints stored by Git-Theta 0.2 rewritten in our format."""

from __future__ import annotations

import click

from git_theta import __version__
from git_theta.errors import UsageError
from git_theta.git.catfile import BlobReader
from git_theta.git.repo import toplevel
from git_theta.git.runner import run
from git_theta.maintenance import migrate as migration
from git_theta.session.context import Session

MESSAGE = "Migrate checkpoints from Git-Theta 0.2 to the git-theta {version} format"


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--commit", "commit", is_flag=True, help="Commit the migrated checkpoints (nothing else may be staged).")
def migrate(paths: tuple[str, ...], commit: bool) -> None:
    """Stage the checkpoints at PATHS (default: all) that Git-Theta 0.2 stored, in this git-theta's format."""
    root = toplevel()
    for change in migration.fix_configuration():
        click.echo(f"git-theta: {change}", err=True)
    legacy = migration.legacy_paths(paths, root)
    if not legacy:
        click.echo("git-theta: no checkpoint stored by Git-Theta 0.2 to migrate", err=True)
        return
    others = migration.staged_elsewhere(legacy, root)
    if commit and others:
        raise UsageError(
            f"--commit would also commit other staged changes ({others[0]}{' ...' if len(others) > 1 else ''}); "
            "commit or unstage them first, or migrate without --commit"
        )
    context = Session.for_repository()
    try:
        with BlobReader(cwd=str(root)) as blobs:
            for path in legacy:
                done = migration.migrate_file(path, root, context, blobs)
                click.echo(f"git-theta: {done.path}: migrated ({done.tensors} tensors; working tree {done.worktree})")
    finally:
        context.close()
    if commit:
        result = run("commit", "-q", "-m", MESSAGE.format(version=__version__), cwd=str(root), check=False)
        click.echo(result.stderr.decode(errors="replace"), err=True, nl=False)
        if result.returncode != 0:
            raise SystemExit(result.returncode)
        click.echo("git-theta: committed the migration")
    else:
        click.echo("git-theta: staged; commit to record the checkpoints in the new format")
