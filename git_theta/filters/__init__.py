"""Git's filters: clean (checkpoint -> metadata) and smudge (metadata -> checkpoint), bytes in and bytes out."""

from __future__ import annotations

import os
from typing import Any


class _Silent:
    """A meter that draws nothing: what the filters get when stderr is not a terminal."""

    def advance(self, count: int) -> None:
        """Count nothing."""

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def meter(label: str, total: int | None) -> Any:
    """A progress meter (filters/progress.py) when stderr is a terminal, else one that draws nothing.

    The meter's module is imported only at a terminal: a filter that git runs in a script starts as cheaply as before.
    """
    if not os.isatty(2):
        return _Silent()
    from git_theta.filters.progress import Meter

    return Meter(label, total)
