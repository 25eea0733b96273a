"""Fault injection for the end-to-end tests: start a git command, wait for a point in its work, kill -9 a process.

The points are states we can observe (k objects stored, n bytes smudged, a file moved aside), polled with a timeout,
never fixed sleeps. Every command runs in a process group of its own, so whatever is left of it (a filter orphaned
when git was killed) is killed when the test ends.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import numpy as np
import psutil

from tests.helpers import git, theta

#: Generous: CI has two cores, shared by two test workers.
TIMEOUT = 60.0
_POLL = 0.002
MiB = 1 << 20
T = TypeVar("T")
SHELLS = ("sh", "dash", "bash")


def big_model(seed: int, tensors: int = 12) -> dict[str, np.ndarray]:
    """A float32 model of ``tensors`` tensors of 1 to 4 MiB: big enough that git add or checkout takes a while."""
    rng = np.random.default_rng(seed)
    return {
        f"layer{i:02d}.weight": rng.standard_normal((1 + i % 4) * MiB // 4, dtype=np.float32) for i in range(tensors)
    }


def until(condition: Callable[[], T], what: str, command: Command | None = None, timeout: float = TIMEOUT) -> T:
    """Poll ``condition`` until it is true and return its value; fail if ``command`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if command is not None and command.process.poll() is not None:
            raise AssertionError(
                f"{command} ended (exit {command.process.returncode}) before {what}; give it more work\n"
                f"{command.stderr()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(_POLL)


def gone(process: psutil.Process) -> bool:
    """Tell whether ``process`` has exited (a zombie nobody reaped counts: it does nothing any more)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Command:
    """A git command in a session (and process group) of its own; its output goes to files (a full pipe blocks)."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None, **popen: object) -> None:
        self.args = args
        self._out, self._err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            ["git", *args], cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
            stdout=self._out, stderr=self._err, start_new_session=True, **popen,
        )  # fmt: skip
        self.group = self.process.pid
        self.git = psutil.Process(self.process.pid)

    def __str__(self) -> str:
        return f"git {' '.join(self.args)}"

    def find(self, marker: str) -> psutil.Process:
        """Wait for the process under git whose command line contains ``marker`` (``filter-process``, ``git-lfs``)."""
        return until(lambda: next(iter(self.every(marker)), None), f"a process {marker!r} under {self}", self)

    def every(self, marker: str) -> list[psutil.Process]:
        """The processes under git now whose command line contains ``marker`` (a command may run several filters,
        one after the other: a status's, then a checkout's)."""
        try:
            children = self.git.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for child in children:
            try:
                line = child.cmdline()
                # git starts a filter through ``sh -c``, which may stay as its parent: we want the filter itself
                if line and Path(line[0]).name not in SHELLS and marker in " ".join(line):
                    found.append(child)
            except psutil.Error:
                continue
        return found

    def held_filter(self) -> psutil.Process:
        """Wait for the filter that ``held_filters`` stopped at its start; ``resume()`` lets it go on."""

        def stopped() -> psutil.Process | None:
            try:
                children = self.git.children(recursive=True)
            except psutil.NoSuchProcess:
                return None
            for child in children:
                with suppress(psutil.Error):
                    if child.status() == psutil.STATUS_STOPPED:
                        return child
            return None

        return until(stopped, f"the filter of {self} stopped at its start", self)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for git to end; return its exit code (negative: the signal that ended it)."""
        return self.process.wait(timeout)

    def stderr(self) -> str:
        """What the command wrote on stderr so far (all of it, once it is closed)."""
        if self._err.closed:
            return self._said
        self._err.seek(0)
        return self._err.read().decode(errors="replace")

    def survivors(self) -> list[psutil.Process]:
        """The processes of the command's group still at work (git, its filter, hook, git-lfs, or their orphans)."""
        found = []
        for process in psutil.process_iter():
            try:
                if os.getpgid(process.pid) == self.group and not gone(process):
                    found.append(process)
            except (psutil.Error, ProcessLookupError):
                continue
        return found

    def kill_group(self) -> None:
        """kill -9 every process of the command's group still alive."""
        for process in self.survivors():
            try:
                process.kill()
            except psutil.Error:
                continue

    def close(self) -> None:
        """Kill what is left of the command and reap git."""
        self.kill_group()
        if self.process.poll() is None:  # our own child: its pid stays ours until reaped
            self.process.kill()
        self.process.wait(TIMEOUT)
        self._said = self.stderr()
        self._out.close()
        self._err.close()


def held_filters(repo: Path) -> dict[str, str]:
    """The environment of a git command whose git-theta filter stops itself (SIGSTOP) before it starts: git waits
    for its handshake meanwhile, so the command cannot end before the test has found the filter (``held_filter``)."""
    command = git("config", "--get", "filter.theta.process", cwd=repo).stdout.decode().strip()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "filter.theta.process",
        "GIT_CONFIG_VALUE_0": f"kill -STOP $$; exec {command}",  # git runs it with sh -c: exec keeps the pid
    }


@contextmanager
def running(*args: str, cwd: Path, env: dict[str, str] | None = None, **popen: object) -> Iterator[Command]:
    """Start ``git *args``; kill whatever is left of it on the way out, whatever happened."""
    command = Command(*args, cwd=cwd, env=env, **popen)
    try:
        yield command
    finally:
        command.close()


def stored_objects(repo: Path) -> list[Path]:
    """The files of a repository's local LFS object store."""
    return [path for path in (repo / ".git" / "lfs" / "objects").glob("*/*/*") if path.is_file()]


def temporary_files(repo: Path) -> list[Path]:
    """What is left in the LFS temporary directory, where objects are written before they are renamed into place."""
    directory = repo / ".git" / "lfs" / "tmp"
    return sorted(directory.iterdir()) if directory.exists() else []


def assert_store_intact(repo: Path) -> None:
    """Every stored object hashes to its name: nothing half-written was ever put in place."""
    for path in stored_objects(repo):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(MiB):
                digest.update(chunk)
        assert digest.hexdigest() == path.name, f"{path} is not what its name says"


def assert_fsck_clean(repo: Path) -> None:
    """``git theta fsck`` finds every referenced object present and intact."""
    result = theta("fsck", cwd=repo, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode(errors="replace")


def assert_no_index_lock(repo: Path) -> None:
    """No ``index.lock`` is left in the repository or any of its linked worktrees."""
    git_dir = repo / ".git"
    assert not [*git_dir.glob("index.lock"), *git_dir.glob("worktrees/*/index.lock")]


def remove_index_lock_of_killed_git(repo: Path) -> None:
    """git removes its index.lock when it exits, or dies of a signal it can catch, but not after kill -9.

    Its own message then tells the user to remove the file if no git process is running, which is what we do (when
    git was killed before it took the lock, there is none).
    """
    (repo / ".git" / "index.lock").unlink(missing_ok=True)


def theta_errors(stderr: str) -> list[str]:
    """The lines git-theta printed as errors."""
    return [line for line in stderr.splitlines() if line.startswith("git-theta: error:")]


def check_out_again(repo: Path, path: str) -> bytes:
    """Delete ``path`` and check it out from the index; return its bytes."""
    (repo / path).unlink()
    git("checkout", "--", path, cwd=repo)
    return (repo / path).read_bytes()


def commit_again_and_check_out(repo: Path, path: str, original: bytes) -> None:
    """The retry: add and commit ``path`` again, then a checkout gives the original bytes and everything is clean."""
    git("add", path, cwd=repo)
    git("commit", "-q", "-m", "retry", cwd=repo)
    assert_fsck_clean(repo)
    assert check_out_again(repo, path) == original
    assert git("status", "--porcelain", cwd=repo).stdout == b""
