"""A long-lived ``git cat-file --batch`` for reading many small blobs without a process each."""

from __future__ import annotations

import subprocess

from git_theta.git.runner import GitError, start_interactive, stop


class BlobReader:
    """Reads blobs by any name git understands (``:path``, ``HEAD:path``, an object id)."""

    def __init__(self, cwd: str | None = None) -> None:
        self._cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    def read(self, name: str) -> bytes | None:
        """Return the blob's content, or None when it does not exist."""
        found = self._ask(name)
        if found is None:
            return None
        _, kind, size = found
        assert self._process is not None and self._process.stdout
        content = self._process.stdout.read(size + 1)[:size]  # the content, then a newline
        return content if kind == b"blob" else None

    def object_id(self, name: str) -> str | None:
        """Return the id of the object ``name`` resolves to now (a ref is read again each time), or None."""
        found = self._ask(name)
        if found is None:
            return None
        assert self._process is not None and self._process.stdout
        self._process.stdout.read(found[2] + 1)
        return found[0].decode()

    def _ask(self, name: str) -> tuple[bytes, bytes, int] | None:
        """Send one request; return the object's ``(id, type, size)`` with its content still to read, or None."""
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
        return fields[0], fields[1], int(fields[2])

    def close(self) -> None:
        """Stop the git process."""
        if self._process is not None:
            stop(self._process)
            self._process = None

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            self._process = start_interactive("cat-file", "--batch", cwd=self._cwd)
        return self._process
