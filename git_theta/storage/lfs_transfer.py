"""Moving objects between the local store and a remote, through git-lfs (its auth, its endpoints)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import BinaryIO

from git_theta.errors import GitThetaError
from git_theta.git.repo import default_remote
from git_theta.git.runner import GitError, output, run
from git_theta.storage.objects import ObjectStore


class TransferError(GitThetaError):
    """Objects could not be uploaded or downloaded."""

    def __init__(self, message: str, failed: list[str] | None = None) -> None:
        super().__init__(message)
        #: The oids that could not be transferred.
        self.failed = failed or []


def require_git_lfs() -> str:
    """Return git-lfs's version line, or say how to install it."""
    try:
        return run("lfs", "version").stdout.decode().strip()
    except GitError:
        raise GitThetaError(
            "git-lfs is not installed; install it (Debian/Ubuntu: apt-get install git-lfs, macOS: brew install "
            "git-lfs, others: https://git-lfs.com) and run this command again"
        ) from None


def push_objects(remote: str, oids: list[str], progress: bool = False) -> None:
    """Upload the objects ``oids`` to ``remote``; with ``progress``, git-lfs shows its progress on stderr."""
    if not oids:
        return
    command = ["git", "lfs", "push", "--object-id", remote, "--stdin"]
    try:
        result = run_lfs(command, progress, input="\n".join(oids).encode() + b"\n")
    except OSError as exc:
        raise TransferError(f"could not start git-lfs to upload to {remote!r} ({exc})", oids) from exc
    if result.returncode != 0:
        reason = "git-lfs's messages above say why" if progress else _upload_error(result.stderr, result.stdout)
        raise TransferError(f"uploading {len(oids)} tensor object(s) to {remote!r} failed: {reason}", oids)


def run_lfs(
    command: list[str],
    progress: bool,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run git-lfs; with ``progress``, its meter and messages go to our stderr, else both streams are kept.

    Not through the runner: git-lfs draws its meter on its stdout, and only when that is a terminal. We force the
    meter and relay it to stderr (our stdout is for our report, a hook's is git's, a filter's is its payload),
    leaving out the line that names our throw-away commit.
    """
    if not progress:
        return subprocess.run(command, input=input, cwd=cwd, env=env, capture_output=True)
    env = {**(env if env is not None else os.environ), "GIT_LFS_FORCE_PROGRESS": "1"}
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    with subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, cwd=cwd, env=env) as process:
        assert process.stdout is not None
        # Fed from a thread: a long list of objects must not wait on git-lfs reading it while we read its output.
        feeder = threading.Thread(target=_feed, args=(process.stdin, input or b""), daemon=True)
        if input is not None:
            feeder.start()
        _relay(process.stdout.fileno())
        if input is not None:
            feeder.join()
    return subprocess.CompletedProcess(command, process.returncode, b"", b"")


def _feed(stdin: BinaryIO, data: bytes) -> None:
    with suppress(BrokenPipeError):
        stdin.write(data)
        stdin.close()


def _relay(fd: int) -> None:
    """Copy git-lfs's output to our stderr piece by piece (a meter redraws with CR), ending its last line."""
    pending, last = b"", b"\n"
    while chunk := os.read(fd, 1 << 16):
        pieces = re.split(rb"(?<=[\r\n])", pending + chunk)
        pending = pieces.pop()
        shown = b"".join(piece for piece in pieces if not piece.startswith(b"fetch: Fetching reference"))
        if shown:
            _to_stderr(shown)
            last = shown[-1:]
    if pending or last == b"\r":
        _to_stderr(pending + b"\n")


def _to_stderr(data: bytes) -> None:
    stream = getattr(sys.stderr, "buffer", None)
    if stream is not None:
        stream.write(data)
    else:  # replaced by a text stream
        sys.stderr.write(data.decode(errors="replace"))
    sys.stderr.flush()


def _upload_error(stderr: bytes, stdout: bytes) -> str:
    """git-lfs's last line about the failure (it names each object it could not send on a line of its own)."""
    lines = [line.strip() for line in (stderr + stdout).decode(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if not line.lower().startswith(("uploading lfs objects", "errors logged"))]
    return (errors or lines or ["git-lfs gave no reason (git lfs logs last shows it)"])[-1]


def download_missing(
    store: ObjectStore, objects: dict[str, int], fetch: Callable[[dict[str, int]], None] | None
) -> tuple[dict[str, int], str]:
    """Download those of ``objects`` (oid -> size) not in ``store``; return what is still missing, and why."""
    missing = {oid: size for oid, size in objects.items() if not store.has(oid)}
    if not missing:
        return {}, ""
    if fetch is None:
        return missing, "no remote to download them from"
    try:
        fetch(missing)
    except TransferError as exc:
        return {oid: missing[oid] for oid in exc.failed}, str(exc)
    return {}, ""


def fetch_objects(objects: dict[str, int], store: ObjectStore, cwd: str | None = None) -> None:
    """Download objects (oid -> size) from the default remote of the repository at ``cwd`` into ``store``, batched
    and concurrently.

    Git LFS has no fetch by object id: it finds objects through pointer files in commits. So we write a commit that
    no ref points to, holding one pointer file per object, and let ``git lfs fetch`` download what it points to, with
    git-lfs's batch API, concurrency, authentication, progress and hash verification. Nothing references the commit;
    ``git gc`` removes it in due course.
    """
    if not objects:
        return
    remote = default_remote(cwd)
    if remote is None:
        raise TransferError("the repository has no remote to download them from", list(objects))
    env = {key: value for key, value in os.environ.items() if key != "GIT_LFS_SKIP_SMUDGE"}
    interactive = sys.stderr.isatty()
    try:
        command = ["git", "lfs", "fetch", remote, _pointer_commit(objects, cwd)]
        result = run_lfs(command, interactive, env=env, cwd=cwd)
    except (OSError, GitError) as exc:
        raise TransferError(f"could not start git-lfs to download them ({exc})", list(objects)) from exc
    failed = [oid for oid in objects if not store.has(oid)]
    if failed:
        reason = (
            "git-lfs could not download them" if interactive else _last_error(result.stderr.decode(errors="replace"))
        )
        raise TransferError(reason, failed)


def _pointer_commit(objects: dict[str, int], cwd: str | None = None) -> str:
    """Write a commit whose tree holds one Git LFS pointer file per object; return its id."""
    import tempfile  # only when downloading

    with tempfile.TemporaryDirectory(prefix="git-theta-fetch-") as directory:
        paths = []
        for oid, size in objects.items():
            path = os.path.join(directory, oid)
            with open(path, "w", encoding="ascii") as handle:
                handle.write(f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n")
            paths.append(path)
        listed = "\n".join(paths).encode() + b"\n"
        blobs = output("hash-object", "-w", "--no-filters", "--stdin-paths", input=listed, cwd=cwd)
    listing = "".join(f"100644 blob {blob}\t{oid}\n" for oid, blob in zip(objects, blobs.split(), strict=True))
    tree = output("mktree", input=listing.encode(), cwd=cwd)
    identity = {"GIT_AUTHOR_NAME": "git-theta", "GIT_AUTHOR_EMAIL": "git-theta@localhost"}
    identity |= {"GIT_COMMITTER_NAME": "git-theta", "GIT_COMMITTER_EMAIL": "git-theta@localhost"}
    result = run("commit-tree", tree, "-m", "git-theta: objects to download", env={**os.environ, **identity}, cwd=cwd)
    return result.stdout.decode().strip()


def _last_error(stderr: str) -> str:
    """The gist of git-lfs's complaint: the last error line, without the object names it repeats."""
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip().lower().startswith(("error", "fatal")) and not line.lower().startswith("errors logged")
    ]
    if not lines:
        return "git-lfs could not download them (git lfs logs last shows why)"
    gist = "git-lfs: " + lines[-1].rsplit("): ", 1)[-1]
    # git lfs fetch sums up a missing or corrupt object on the server in this one line; its log has the details.
    return gist + (" (git lfs logs last shows why)" if "failed to fetch some objects" in gist else "")
