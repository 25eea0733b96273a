"""Git processes started on a thread of their own give the caller what starting them in its own thread would."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from git_theta.git.catfile import BlobReader
from git_theta.git.runner import Launched


def test_launched_gives_back_the_value_or_the_error_in_the_callers_thread() -> None:
    made_in: list[str] = []

    def make() -> int:
        made_in.append(threading.current_thread().name)
        return 42

    assert Launched(make).result() == 42 and made_in != [threading.current_thread().name]

    def fail() -> int:
        raise FileNotFoundError("no git")

    with pytest.raises(FileNotFoundError, match="no git"):
        Launched(fail).result()


def test_a_reader_started_ahead_answers_and_closes_even_if_never_asked(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    blob = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"], cwd=tmp_path, input=b"hello\n", capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    reader = BlobReader(cwd=str(tmp_path))
    reader.start()
    reader.start()  # once started, starting again does nothing
    assert reader.read(blob) == b"hello\n" and reader.read("HEAD:missing") is None
    reader.close()
    unused = BlobReader(cwd=str(tmp_path))
    unused.start()
    unused.close()  # waits for the start, then stops it: no process left behind
    assert unused.read(blob) == b"hello\n"  # and a closed reader starts again when asked
    unused.close()
