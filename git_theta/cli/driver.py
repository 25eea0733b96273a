"""The diff drivers git calls (configured by ``git theta install``); not meant to be typed by hand."""

from __future__ import annotations

import sys

import click

from git_theta.pipeline import no_blas_threads


@click.command("diff-driver", hidden=True, context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def diff_driver(args: tuple[str, ...]) -> None:
    """git's external diff (diff.theta.command): per-tensor statistics between two sides."""
    no_blas_threads()  # before numpy loads; the driver's children are git's plumbing
    from git_theta.diffs.external import external_diff

    external_diff(list(args), sys.stdout)


@click.command("textconv", hidden=True)
@click.argument("file", type=click.Path(dir_okay=False))
def textconv_command(file: str) -> None:
    """git's textconv (diff.theta.textconv): one line per tensor of one side."""
    no_blas_threads()
    from git_theta.diffs.textconv import textconv

    textconv(file, sys.stdout)
