"""Moving objects between the local store and a remote, through git-lfs (its auth, its endpoints)."""

from __future__ import annotations

from git_theta.errors import GitThetaError
from git_theta.git.runner import GitError, run


class TransferError(GitThetaError):
    """Objects could not be uploaded or downloaded."""


def require_git_lfs() -> str:
    """Return git-lfs's version line, or say how to install it."""
    try:
        return run("lfs", "version").stdout.decode().strip()
    except GitError:
        raise GitThetaError(
            "git-lfs is not installed; install it (Debian/Ubuntu: apt-get install git-lfs, macOS: brew install "
            "git-lfs, others: https://git-lfs.com) and run this command again"
        ) from None


def push_objects(remote: str, oids: list[str]) -> None:
    """Upload the objects ``oids`` to ``remote``; git-lfs skips those the remote already has."""
    if not oids:
        return
    try:
        run("lfs", "push", "--object-id", remote, "--stdin", input="\n".join(oids).encode() + b"\n")
    except GitError as exc:
        raise TransferError(f"uploading {len(oids)} tensor object(s) to {remote!r} failed: {exc.stderr.strip()}") from exc
