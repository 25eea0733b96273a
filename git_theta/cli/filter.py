"""The filter commands in ``git-theta --help`` (git itself reaches them through main.py's fast path)."""

from __future__ import annotations

import click

from git_theta.filters import run


@click.command("filter-process", hidden=True)
def filter_process() -> None:
    """Serve git's long-running filter protocol on stdin/stdout."""
    run.filter_process()


@click.command(hidden=True)
@click.argument("path", default="")
def clean(path: str) -> None:
    """Read a checkpoint on stdin and write its metadata on stdout."""
    run.clean(path)


@click.command(hidden=True)
@click.argument("path", default="")
def smudge(path: str) -> None:
    """Read metadata on stdin and write the checkpoint on stdout."""
    run.smudge(path)
