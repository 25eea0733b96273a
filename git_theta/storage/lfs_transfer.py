"""Moving objects between the local store and a remote, through git-lfs (its auth, its endpoints)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from typing import BinaryIO

from git_theta.errors import GitThetaError
from git_theta.git.pktline import (
    FLUSH,
    PacketReader,
    PacketWriter,
    ProtocolError,
    read_text_list,
    write_text_list,
)
from git_theta.git.runner import GitError, run


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


def push_objects(remote: str, oids: list[str]) -> None:
    """Upload the objects ``oids`` to ``remote``; git-lfs skips those the remote already has."""
    if not oids:
        return
    try:
        run("lfs", "push", "--object-id", remote, "--stdin", input="\n".join(oids).encode() + b"\n")
    except GitError as exc:
        raise TransferError(
            f"uploading {len(oids)} tensor object(s) to {remote!r} failed: {exc.stderr.strip()}"
        ) from exc


def fetch_objects(objects: dict[str, int]) -> None:
    """Download objects (oid -> size) from the remote into the local store; raise TransferError if any fails.

    Git LFS has no fetch by object id, so we hand it one pointer per object through its own long-running smudge
    filter: git-lfs resolves the remote, authenticates, downloads into its storage (which is ours) and verifies the
    hash. The smudged content it sends back is discarded.
    """
    if not objects:
        return
    if not run("remote").stdout.strip() and run("config", "--get", "lfs.url", check=False).returncode != 0:
        raise TransferError("the repository has no remote to download them from", list(objects))
    env = {key: value for key, value in os.environ.items() if key != "GIT_LFS_SKIP_SMUDGE"}
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            ["git", "lfs", "filter-process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env
        )
        assert process.stdin and process.stdout
        failed = list(objects)
        try:
            _client_handshake(process.stdin, process.stdout)
            for oid, size in objects.items():
                if _smudge_pointer(process.stdin, process.stdout, oid, size):
                    failed.remove(oid)
        except (OSError, EOFError, ProtocolError):
            pass  # git-lfs gave up; what it said is in ``errors``
        finally:
            process.stdin.close()
            process.wait()
        if failed:
            errors.seek(0)
            raise TransferError(_last_error(errors.read().decode(errors="replace")), failed)


def _last_error(stderr: str) -> str:
    """The gist of git-lfs's complaint: the last error line, without the object names it repeats."""
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip().lower().startswith(("error", "fatal")) and not line.lower().startswith("errors logged")
    ]
    if not lines:
        return "git-lfs could not download them"
    return "git-lfs: " + lines[-1].rsplit("): ", 1)[-1]


def _client_handshake(stdin: BinaryIO, stdout: BinaryIO) -> None:
    write_text_list(stdin, ["git-filter-client", "version=2"])
    if read_text_list(stdout) != ["git-filter-server", "version=2"]:
        raise ProtocolError("git-lfs did not answer the filter protocol handshake")
    write_text_list(stdin, ["capability=clean", "capability=smudge"])
    read_text_list(stdout)


def _smudge_pointer(stdin: BinaryIO, stdout: BinaryIO, oid: str, size: int) -> bool:
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
    write_text_list(stdin, ["command=smudge", f"pathname=git-theta-object-{oid[:12]}"])
    PacketWriter(stdin).write(pointer.encode())
    stdin.write(FLUSH)
    stdin.flush()
    status = read_text_list(stdout)
    if "status=success" not in status:
        return False
    PacketReader(stdout).drain()
    final = read_text_list(stdout)
    return "status=error" not in final and "status=abort" not in final
