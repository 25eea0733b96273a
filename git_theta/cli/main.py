"""Entry point of ``git-theta``: dispatch, and the one place that turns errors into messages and exit codes.

git starts the filter for every command that touches a checkpoint, so the filter commands skip click entirely.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import NoReturn

from git_theta.errors import report

FILTER_COMMANDS = ("filter-process", "clean", "smudge")
#: Objects allocated between collections of the youngest generation (Python's default: 700). A command allocates
#: many objects that live to its end (modules, metadata entries) and few reference cycles: collecting every 700
#: allocations costs the filter ~3 ms of its start and ~3 ms per 2000 tensors, for nothing.
YOUNG_COLLECTION = 100_000


def main(argv: list[str] | None = None) -> None:
    """Run the command line and exit with its status."""
    gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in FILTER_COMMANDS and len(args) <= 2 and not any(a.startswith("-") for a in args[1:]):
        _leave_at_once(_run_filter(args[0], args[1:]))
    import click

    from git_theta.cli.group import cli

    try:
        cli.main(args=args, prog_name="git-theta", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("git-theta: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # the one place that turns exceptions into messages
        sys.exit(report(exc))
    sys.exit(0)


def _run_filter(command: str, args: list[str]) -> int:
    try:
        from git_theta.git.repo import SettingsQuery
        from git_theta.pipeline import no_blas_threads

        no_blas_threads()  # the filter's children are git and git-lfs

        # git reads the settings while the filter's modules load (git waits on both at the start of every command)
        settings = SettingsQuery()
        from git_theta.filters import run

        getattr(run, command.replace("-", "_"))(*args, settings=settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return report(exc)
    return 0


def _leave_at_once(code: int) -> NoReturn:
    """Exit without tearing the interpreter down: git waits for its filter to exit, and freeing every module (numpy
    among them) takes ~10 ms. By now every answer is written and every object stored; only the streams need a flush.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # git closed the pipe, or the stream is closed already
            pass
    os._exit(code)
