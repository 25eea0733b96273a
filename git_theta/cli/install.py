"""``git theta install`` and ``git theta uninstall``: the filter configuration and our hooks."""

from __future__ import annotations

import shutil

import click

from git_theta.errors import UsageError
from git_theta.git import config, hooks, repo
from git_theta.git.command import manual_page, theta_command, theta_words, virtual_environment
from git_theta.git.runner import run
from git_theta.storage.lfs_transfer import require_git_lfs


def _in_repository() -> bool:
    return run("rev-parse", "--git-dir", check=False).returncode == 0


@click.command()
@click.option("--local", is_flag=True, help="Configure only the current repository instead of the global config.")
def install(local: bool) -> None:
    """Configure git to use git-theta (globally, or for this repository with --local)."""
    lfs_version = require_git_lfs()
    if local and not _in_repository():
        raise UsageError("--local needs a git repository; run it inside one")
    config.set_values(config.drivers_config(), local)
    click.echo(
        f"git-theta: filter, diff and merge drivers 'theta' configured in the {'local' if local else 'global'} "
        f"git config ({lfs_version})"
    )
    _say_what_git_runs()
    if _in_repository():
        repo.toplevel()
        written = hooks.install_hooks()
        if written:
            click.echo(f"git-theta: installed hooks: {', '.join(written)} (in {hooks.hooks_dir()})")


def _say_what_git_runs() -> None:
    """Name the program git will run, and warn when it lives in a virtual environment that may go away."""
    program = theta_words()[0]
    environment = virtual_environment(program)
    where = f" (in the virtual environment {environment}, whether it is active or not)" if environment else ""
    click.echo(f"git-theta: git will run {theta_command()}{where}")
    if environment is not None:
        click.echo(
            f"git-theta: warning: if {environment} is moved or deleted, checkouts of tracked files fail until "
            "git theta install is run again from where git-theta is then installed",
            err=True,
        )
    if shutil.which("man") is None:
        click.echo("git-theta: note: man is not installed, so git theta --help finds no manual: git theta -h", err=True)
    elif manual_page(program) is None:
        click.echo(
            "git-theta: note: git theta --help finds no manual page (none is installed beside git-theta; an editable "
            "install has none): git theta -h lists the commands",
            err=True,
        )


@click.command()
@click.option("--local", is_flag=True, help="Remove the configuration of the current repository only.")
def uninstall(local: bool) -> None:
    """Remove git-theta's filter configuration (and its hooks in the current repository)."""
    if local and not _in_repository():
        raise UsageError("--local needs a git repository; run it inside one")
    config.remove_section("filter.theta", local)
    config.remove_section("diff.theta", local)
    config.remove_section("merge.theta", local)
    scope = "local" if local else "global"
    click.echo(f"git-theta: filter, diff and merge drivers 'theta' removed from the {scope} git config")
    if _in_repository():
        removed = hooks.uninstall_hooks()
        if removed:
            click.echo(f"git-theta: removed hooks: {', '.join(removed)}")
