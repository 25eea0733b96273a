"""The filter commands git runs: ``filter-process`` (long-running) and single-shot ``clean`` / ``smudge``."""

from __future__ import annotations

import sys

import click

from git_theta.filters.clean import clean as clean_checkpoint
from git_theta.filters.context import FilterContext
from git_theta.filters.process import serve
from git_theta.filters.smudge import smudge as smudge_metadata


@click.command("filter-process", hidden=True)
def filter_process() -> None:
    """Serve git's long-running filter protocol on stdin/stdout."""
    context = FilterContext.for_repository()
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer, context)
    finally:
        context.close()


@click.command(hidden=True)
@click.argument("path", default="")
def clean(path: str) -> None:
    """Read a checkpoint on stdin and write its metadata on stdout."""
    context = FilterContext.for_repository()
    try:
        sys.stdout.buffer.write(clean_checkpoint(sys.stdin.buffer, path, context))
    finally:
        context.close()


@click.command(hidden=True)
@click.argument("path", default="")
def smudge(path: str) -> None:
    """Read metadata on stdin and write the checkpoint on stdout."""
    context = FilterContext.for_repository()
    try:
        smudge_metadata(sys.stdin.buffer.read(), path, context)(sys.stdout.buffer)
    finally:
        context.close()
