"""A long-lived ``git cat-file --batch`` for reading many small blobs without a process each."""

from __future__ import annotations

import subprocess

from git_theta.git.runner import GitError


class BlobReader:
    """Reads blobs by any name git understands (``:path``, ``HEAD:path``, an object id)."""

    def __init__(self, cwd: str | None = None) -> None:
        self._cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    def read(self, name: str) -> bytes | None:
        """Return the blob's content, or None when it does not exist."""
        if "\n" in name:
            return None
        process = self._start()
        assert process.stdin and process.stdout
        process.stdin.write(name.encode("utf-8", errors="surrogateescape") + b"\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            raise GitError(["git", "cat-file", "--batch"], process.poll() or -1, "stopped unexpectedly")
        # "<oid> <type> <size>" for an object; "<name> missing" (the name may hold spaces) otherwise.
        fields = line.split()
        if len(fields) != 3 or not fields[2].isdigit() or line.endswith(b" missing\n"):
            return None
        if fields[1] != b"blob":
            process.stdout.read(int(fields[2]) + 1)
            return None
        data = process.stdout.read(int(fields[2]))
        process.stdout.read(1)
        return data

    def close(self) -> None:
        """Stop the git process."""
        if self._process is not None:
            assert self._process.stdin
            self._process.stdin.close()
            self._process.wait()
            self._process = None

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            self._process = subprocess.Popen(
                ["git", "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=self._cwd,
            )
        return self._process
