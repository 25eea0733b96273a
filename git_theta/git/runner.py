"""The one place that runs git: argument lists only (never a shell), exit status always checked."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Generic, TypeVar

from git_theta.errors import GitThetaError, UsageError
from git_theta.pipeline import Task

T = TypeVar("T")


class GitError(GitThetaError):
    """A git or git-lfs command failed; keeps the command, exit code and stderr."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.args_ = list(args)
        self.returncode = returncode
        self.stderr = stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
        super().__init__(f"'{' '.join(args)}' failed (exit {returncode}): {detail}")


class NotARepositoryError(UsageError):
    """A command that needs a git repository was run outside one."""

    def __init__(self) -> None:
        super().__init__("not inside a git repository; run this in one (cd into it, or git init first)")


def run(
    *args: str,
    input: bytes | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    show_stderr: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git *args`` and return the completed process; raise GitError on failure when ``check``.

    With ``show_stderr``, git's stderr is ours (its messages, and the progress of the filters it runs, reach the
    terminal) and ``stderr`` is left None.
    """
    command = ["git", *args]
    stderr = None if show_stderr else subprocess.PIPE
    try:
        result = subprocess.run(command, input=input, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr)
    except FileNotFoundError:
        raise GitThetaError("git is not installed or not on PATH; install git first") from None
    return _checked(result, check)


def start(*args: str, cwd: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``git *args`` without waiting for it (``finish`` collects it): git commands run side by side."""
    try:
        return subprocess.Popen(["git", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise GitThetaError("git is not installed or not on PATH; install git first") from None


def start_interactive(*args: str, cwd: str | None = None) -> subprocess.Popen[bytes]:
    """Start a long-lived ``git *args`` that answers question after question on its stdin (``stop`` ends it)."""
    return subprocess.Popen(["git", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd)


class Launched(Generic[T]):
    """Something made on a thread of its own, git processes above all: Python waits for a new process to exec, a
    millisecond or more, which the caller spends on its own work instead. ``result`` waits for it (and raises what
    making it raised)."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._task = Task(make, ())
        threading.Thread(target=self._task.run, name="git-theta-launch", daemon=True).start()

    def result(self) -> T:
        return self._task.result()


class Interactive:
    """A long-lived ``git ARGS`` that answers question after question on its stdin, for a whole git command.

    ``start`` launches it on a thread of its own (see ``Launched``); the first question waits for it."""

    def __init__(self, *args: str, cwd: str | None = None) -> None:
        self.command = ["git", *args]
        self._cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None
        self._launching: Launched[subprocess.Popen[bytes]] | None = None

    def start(self) -> None:
        """Start git, unless it is running or starting already."""
        if self._process is None and self._launching is None:
            self._launching = Launched(partial(start_interactive, *self.command[1:], cwd=self._cwd))

    def process(self) -> subprocess.Popen[bytes]:
        """The running git process (started now, or waited for, if need be)."""
        if self._process is None:
            self.start()
            assert self._launching is not None
            launching, self._launching = self._launching, None
            self._process = launching.result()
        return self._process

    def close(self) -> None:
        """Stop the git process (one still starting is waited for first)."""
        if self._launching is not None:
            self.process()
        if self._process is not None:
            stop(self._process)
            self._process = None


def start_side_by_side(*commands: Sequence[str], cwd: str | None = None) -> Launched[list[subprocess.Popen[bytes]]]:
    """Start several git commands (``start``) on a thread of their own, to run side by side while the caller goes on;
    ``result()`` gives their processes, in order."""
    return Launched(lambda: [start(*args, cwd=cwd) for args in commands])


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a git process ``start_interactive`` started: close its input and wait for it."""
    assert process.stdin
    process.stdin.close()
    process.wait()


def finish(process: subprocess.Popen[bytes], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Wait for a git command ``start`` started; its result as ``run`` gives it."""
    stdout, stderr = process.communicate()
    return _checked(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), check)


def _checked(result: subprocess.CompletedProcess[bytes], check: bool) -> subprocess.CompletedProcess[bytes]:
    if check and result.returncode != 0:
        said = result.stderr or b""
        if result.returncode == 128 and b"not a git repository" in said:
            raise NotARepositoryError()
        raise GitError(result.args, result.returncode, said.decode(errors="replace") or "see git's messages above")
    return result


def output(*args: str, input: bytes | None = None, cwd: str | None = None) -> str:
    """Run git and return its stdout as text without the trailing newline."""
    return run(*args, input=input, cwd=cwd).stdout.decode("utf-8", errors="surrogateescape").rstrip("\n")


def split_z(data: bytes) -> list[str]:
    """Split ``-z`` output on NUL."""
    return [item.decode("utf-8", errors="surrogateescape") for item in data.split(b"\0") if item]
