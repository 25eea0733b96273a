"""The click command group, with lazy command loading: only the command that runs is imported."""

from __future__ import annotations

import importlib
import os

import click

from git_theta import __version__

COMMANDS = {
    "install": "git_theta.cli.install:install",
    "uninstall": "git_theta.cli.install:uninstall",
    "track": "git_theta.cli.track:track",
    "untrack": "git_theta.cli.untrack:untrack",
    "status": "git_theta.cli.status:status",
    "add": "git_theta.cli.add:add",
    "ls": "git_theta.cli.ls:ls",
    "diff": "git_theta.cli.diff:diff",
    "log": "git_theta.cli.log:log",
    "diff-driver": "git_theta.cli.driver:diff_driver",
    "textconv": "git_theta.cli.driver:textconv_command",
    "gc": "git_theta.cli.gc:gc",
    "fsck": "git_theta.cli.fsck:fsck",
    "pull": "git_theta.cli.pull:pull",
    "push": "git_theta.cli.push:push",
    "clean": "git_theta.cli.filter:clean",
    "smudge": "git_theta.cli.filter:smudge",
    "filter-process": "git_theta.cli.filter:filter_process",
    "hook": "git_theta.cli.hook:hook",
    "migrate": "git_theta.cli.migrate:migrate",
    "merge": "git_theta.cli.merge:merge",
    "merge-driver": "git_theta.cli.merge:merge_driver",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when called (click's LazyGroup recipe)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="git-theta")
@click.option("--verbose", is_flag=True, help="Show tracebacks for errors.")
def cli(verbose: bool) -> None:
    """git-theta: version machine-learning checkpoints in Git, one exact tensor object at a time."""
    if verbose:
        os.environ["GIT_THETA_DEBUG"] = "1"
