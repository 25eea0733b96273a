"""A one-line progress meter on stderr, as git and git-lfs draw theirs: at a terminal, for work that takes a while.

Git hands its stderr to the filters it starts, so the meter reaches the user's terminal exactly when git's own
output does. It shows only once the work has taken ``GIT_PROGRESS_DELAY`` seconds (git's own setting; 1 s here
unless set), so a quick command prints nothing extra.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

#: Seconds of work before a meter shows, unless GIT_PROGRESS_DELAY says otherwise.
DEFAULT_DELAY = 1.0
#: Seconds between two redraws.
REDRAW = 0.1


def delay() -> float:
    """The delay before a meter shows: ``GIT_PROGRESS_DELAY`` when it is a number of seconds, else 1 s."""
    try:
        return max(0.0, float(os.environ.get("GIT_PROGRESS_DELAY", DEFAULT_DELAY)))
    except ValueError:
        return DEFAULT_DELAY


class Meter:
    """Bytes done of an optional total, drawn in place as ``label:  45% of 930.0 MiB, 210.0 MiB/s``.

    Use it as a context manager: leaving the block ends the line, with ``done.`` when the work succeeded.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._start = clock()
        self._delay = delay()
        self._drawn_at: float | None = None
        self._width = 0
        self._broken = False

    def advance(self, count: int) -> None:
        """Count ``count`` more bytes done; redraw when it is time to."""
        self.done += count
        now = self._clock()
        if self._broken or now - self._start < self._delay:
            return
        if self._drawn_at is None or now - self._drawn_at >= REDRAW:
            self._drawn_at = now
            self._draw(self._figures(now), "\r")

    def close(self, ok: bool = True) -> None:
        """End the line, if the meter showed: with the total and the time taken when ``ok``."""
        if self._drawn_at is None:
            return
        self._drawn_at = None
        elapsed = self._clock() - self._start
        text = f"100% of {_size(self.done)}, {elapsed:.1f} s, done." if ok else self._figures(self._clock())
        self._draw(text, "\n")

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.close(ok=kind is None)

    def _figures(self, now: float) -> str:
        elapsed = now - self._start
        rate = f", {_size(self.done / elapsed)}/s" if elapsed >= 0.5 else ""  # a rate needs some time to mean much
        if self.total and self.done <= self.total:
            return f"{100 * self.done // self.total:3d}% of {_size(self.total)}{rate}"
        return f"{_size(self.done)}{rate}"

    def _draw(self, figures: str, end: str) -> None:
        room = _columns() - 1 - len(figures) - 2  # the figures always fit; a long label is cut
        label = self.label if len(self.label) <= room else self.label[: max(room - 3, 0)] + "..."
        line = f"{label}: {figures}"
        padding = " " * max(0, self._width - len(line))  # cover what a longer line drew before
        self._width = len(line)
        try:
            self._stream.write(f"{line}{padding}{end}")
            self._stream.flush()
        except (OSError, ValueError):  # the terminal went away: the work goes on without a meter
            self._broken, self._drawn_at = True, None


def _columns() -> int:
    try:
        return os.get_terminal_size(2).columns or 80
    except OSError:
        return 80


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
