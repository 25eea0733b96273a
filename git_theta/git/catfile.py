"""A long-lived ``git cat-file --batch`` for reading many small blobs without a process each."""

from __future__ import annotations

from git_theta.git.runner import GitError, Interactive


class BlobReader(Interactive):
    """Reads blobs by any name git understands (``:path``, ``HEAD:path``, an object id)."""

    def __init__(self, cwd: str | None = None) -> None:
        super().__init__("cat-file", "--batch", cwd=cwd)

    def read(self, name: str) -> bytes | None:
        """Return the blob's content, or None when it does not exist."""
        found = self._ask(name)
        if found is None:
            return None
        _, kind, size = found
        stdout = self.process().stdout
        assert stdout
        content = stdout.read(size + 1)[:size]  # the content, then a newline
        return content if kind == b"blob" else None

    def object_id(self, name: str) -> str | None:
        """Return the id of the object ``name`` resolves to now (a ref is read again each time), or None."""
        found = self._ask(name)
        if found is None:
            return None
        stdout = self.process().stdout
        assert stdout
        stdout.read(found[2] + 1)
        return found[0].decode()

    def _ask(self, name: str) -> tuple[bytes, bytes, int] | None:
        """Send one request; return the object's ``(id, type, size)`` with its content still to read, or None."""
        if "\n" in name:
            return None
        process = self.process()
        assert process.stdin and process.stdout
        process.stdin.write(name.encode("utf-8", errors="surrogateescape") + b"\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            raise GitError(self.command, process.poll() or -1, "stopped unexpectedly")
        # "<oid> <type> <size>" for an object; "<name> missing" (the name may hold spaces) otherwise.
        fields = line.split()
        if len(fields) != 3 or not fields[2].isdigit() or line.endswith(b" missing\n"):
            return None
        return fields[0], fields[1], int(fields[2])

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
