"""The filter commands git runs, on the process's own stdin and stdout."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from git_theta.filters.process import serve
from git_theta.git.hooks import ensure_hooks
from git_theta.session.context import Session

if TYPE_CHECKING:
    from git_theta.git.repo import SettingsQuery


def filter_process(settings: SettingsQuery | None = None) -> None:
    """Serve git's long-running filter protocol (``filter.theta.process``); ``settings`` may be read already."""
    context = Session.for_repository(settings)
    # Our own buffer on stdout, whatever PYTHONUNBUFFERED says (common in containers): without it every packet
    # of a small tensor is a system call. Each answer ends with a flush (pktline.write_text_list).
    stdout = open(sys.stdout.fileno(), "wb", buffering=1 << 16, closefd=False)  # noqa: SIM115 (closed below)
    # And a large one on stdin: a 64 KiB packet costs two system calls with the default 8 KiB buffer, and the
    # packets of a large checkpoint come by the thousand; with 1 MiB, one call brings about 16 of them.
    stdin = open(sys.stdin.fileno(), "rb", buffering=1 << 20, closefd=False)  # noqa: SIM115 (closed below)
    try:
        serve(stdin, stdout, context)
    finally:
        context.close()
        stdin.close()
        try:
            stdout.close()
        except OSError:
            pass  # git is gone: there is no one left to read the rest
    # A clone gets its pre-push hook here (once git is served), before anyone can push from it.
    ensure_hooks(context.hooks)


def clean(path: str = "", settings: SettingsQuery | None = None) -> None:
    """Single-shot clean (``filter.theta.clean``): checkpoint on stdin, metadata on stdout."""
    from git_theta.filters.clean import clean as clean_checkpoint

    context = Session.for_repository(settings)
    try:
        sys.stdout.buffer.write(clean_checkpoint(sys.stdin.buffer, path, context))
    finally:
        context.close()


def smudge(path: str = "", settings: SettingsQuery | None = None) -> None:
    """Single-shot smudge (``filter.theta.smudge``): metadata on stdin, checkpoint on stdout."""
    from git_theta.filters.smudge import smudge as smudge_metadata

    context = Session.for_repository(settings)
    try:
        smudge_metadata(sys.stdin.buffer.read(), path, context)(sys.stdout.buffer)
    finally:
        context.close()
