"""The one place that runs git: argument lists only (never a shell), exit status always checked."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

from git_theta.errors import GitThetaError, UsageError


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
