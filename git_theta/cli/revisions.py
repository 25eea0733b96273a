"""Telling revisions from paths on a command line, as git does (``--`` separates them when it is given)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from git_theta.errors import UsageError
from git_theta.git.repo import resolve_tree
from git_theta.git.runner import output


class SeparatedCommand(click.Command):
    """A command that keeps what follows ``--`` apart (click would merge it into the arguments): git's paths."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta["git_theta.paths"] = args[at + 1 :]
            _no_options_after(self, args[at + 1 :])
            args = args[:at]
        return super().parse_args(ctx, args)


def _no_options_after(command: click.Command, paths: list[str]) -> None:
    """Say so when one of our options follows ``--``, where git (and we) read every argument as a path."""
    names = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    for path in paths:
        if path.split("=", 1)[0] in names and not os.path.lexists(path):
            raise UsageError(
                f"options go before '--' (what follows it are paths, as in git): move {path} before the '--'"
            )


def split_args(args: list[str], top: Path) -> tuple[list[str], list[str]]:
    """Revisions and paths (relative to the top of the working tree), told apart as git does."""
    separated = click.get_current_context().meta.get("git_theta.paths")
    if separated is not None:
        for arg in args:
            if not is_revision(arg, top):
                raise UsageError(f"unknown revision {arg!r}")
        revisions, paths = args, separated
    else:
        count = 0
        while count < len(args) and is_revision(args[count], top):
            count += 1
        revisions, paths = args[:count], args[count:]
        for path in paths:
            if not os.path.exists(path) and not any(c in path for c in "*?[:"):
                raise UsageError(
                    f"unknown revision or path not in the working tree: {path!r} "
                    "(use '--' to separate paths from revisions)"
                )
    prefix = output("rev-parse", "--show-prefix")
    return revisions, [os.path.normpath(prefix + path) for path in paths]


def is_revision(arg: str, top: Path) -> bool:
    """Tell whether ``arg`` names a revision (``A..B`` and ``A...B`` included)."""
    parts = arg.replace("...", "..").split("..") if ".." in arg else [arg]
    return all(resolve_tree(part or "HEAD", str(top)) is not None for part in parts)
