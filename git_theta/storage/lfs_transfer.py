"""Moving objects between the local store and a remote, through git-lfs (its auth, its endpoints)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

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
        # Not through the runner: git-lfs draws its progress on its stdout when that is a terminal, so it gets our
        # stderr (the caller's stdout is for its own report, and a hook's for git).
        result = subprocess.run(
            command,
            input="\n".join(oids).encode() + b"\n",
            stdout=sys.stderr.fileno() if progress else subprocess.PIPE,
            stderr=None if progress else subprocess.PIPE,
        )
    except OSError as exc:
        raise TransferError(f"could not start git-lfs to upload to {remote!r} ({exc})", oids) from exc
    if result.returncode != 0:
        reason = "git-lfs's messages above say why" if progress else _upload_error(result.stderr, result.stdout)
        raise TransferError(f"uploading {len(oids)} tensor object(s) to {remote!r} failed: {reason}", oids)


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
        result = subprocess.run(
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=None if interactive else subprocess.PIPE
        )
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
