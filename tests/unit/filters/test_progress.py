"""The progress meter: silent for quick work, drawn in place once slow, ended with a final line."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from git_theta.filters.progress import Meter, delay


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def default_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIT_PROGRESS_DELAY", raising=False)


def test_quick_work_draws_nothing() -> None:
    stream, clock = io.StringIO(), Clock()
    with Meter("git-theta: storing m.safetensors", 1000, stream, clock) as meter:
        clock.now += 0.9
        meter.advance(1000)
    assert stream.getvalue() == ""


def test_slow_work_is_drawn_in_place_then_done() -> None:
    stream, clock = io.StringIO(), Clock()
    with Meter("git-theta: checking out m.safetensors", 4 << 20, stream, clock) as meter:
        clock.now += 1.0
        meter.advance(1 << 20)
        clock.now += 0.05
        meter.advance(1 << 20)  # too soon to redraw
        clock.now += 0.95
        meter.advance(2 << 20)
    assert stream.getvalue().split("\r") == [
        "git-theta: checking out m.safetensors:  25% of 4.0 MiB, 1.0 MiB/s",
        "git-theta: checking out m.safetensors: 100% of 4.0 MiB, 2.0 MiB/s",
        "git-theta: checking out m.safetensors: 100% of 4.0 MiB, 2.0 s, done.\n",
    ]


def test_a_failure_ends_the_line_without_done_and_a_total_overrun_shows_bytes() -> None:
    stream, clock = io.StringIO(), Clock()
    with pytest.raises(RuntimeError), Meter("x", 10, stream, clock) as meter:
        clock.now += 2
        meter.advance(20)  # more than the estimated total (a compressed file, say)
        raise RuntimeError
    assert stream.getvalue() == "x: 20 B, 10 B/s\rx: 20 B, 10 B/s\n"


def test_git_progress_delay_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_PROGRESS_DELAY", "0")
    assert delay() == 0.0
    stream, clock = io.StringIO(), Clock()
    Meter("x", None, stream, clock).advance(5)
    assert stream.getvalue() == "x: 5 B\r"  # no rate before half a second
    monkeypatch.setenv("GIT_PROGRESS_DELAY", "soon")
    assert delay() == 1.0


def test_a_long_label_is_cut_so_the_figures_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("git_theta.filters.progress._columns", lambda: 40)
    stream, clock = io.StringIO(), Clock()
    meter = Meter("git-theta: storing models/very/deep/path/model.safetensors", 100, stream, clock)
    clock.now += 1
    meter.advance(50)
    line = stream.getvalue().rstrip("\r")
    assert len(line) == 39 and line.endswith("...:  50% of 100 B, 50 B/s")


def test_a_filter_imports_the_meter_only_at_a_terminal() -> None:
    program = (
        "import sys\n"
        "from git_theta.filters import meter\n"
        "with meter('x', 1) as progress:\n"
        "    progress.advance(1)\n"
        "print('git_theta.filters.progress' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert result.stdout == "False\n" and result.stderr == ""
