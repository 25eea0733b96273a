"""Reading git attributes: which files git hands to git-theta, and the format a file names.

Every filter imports this module; writing the tracking lines of .gitattributes lives in ``git/tracking.py``.
"""

from __future__ import annotations

from typing import IO

from git_theta.git.runner import GitError, Interactive, run

#: A gitattribute that names a file's checkpoint format, e.g. ``*.ckpt filter=theta theta-checkpoint=torch``.
CHECKPOINT_ATTRIBUTE = "theta-checkpoint"


def check_attr(attribute: str, paths: list[str], cwd: str | None = None) -> dict[str, str]:
    """Return ``{path: value}`` of one attribute for many paths (value is 'unspecified' when unset)."""
    if not paths:
        return {}
    data = "\0".join(paths).encode("utf-8", errors="surrogateescape") + b"\0"
    out = run("check-attr", "-z", "--stdin", attribute, input=data, cwd=cwd).stdout
    fields = out.decode("utf-8", errors="surrogateescape").split("\0")
    return {fields[i]: fields[i + 2] for i in range(0, len(fields) - 2, 3)}


class AttributeReader(Interactive):
    """One long-lived ``git check-attr -z --stdin ATTRIBUTE...`` for a whole git command: each path's values without
    a git process each. ``start`` launches it ahead of the first question, to run beside what the caller does next."""

    def __init__(self, *attributes: str, cwd: str | None = None) -> None:
        super().__init__("check-attr", "-z", "--stdin", *attributes, cwd=cwd)
        self._attributes = attributes

    def value(self, path: str) -> str:
        """The first attribute's value for ``path`` ('unspecified' when unset)."""
        return self.values(path)[self._attributes[0]]

    def values(self, path: str) -> dict[str, str]:
        """``{attribute: value}`` for ``path`` (a value is 'unspecified' when unset)."""
        process = self.process()
        assert process.stdin and process.stdout
        process.stdin.write(path.encode("utf-8", errors="surrogateescape") + b"\0")
        process.stdin.flush()
        values = {}
        for _ in self._attributes:  # git answers each as the path, the attribute, its value: at once
            _, attribute, value = (self._field(process.stdout) for _ in range(3))
            values[attribute] = value
        return values

    def _field(self, stdout: IO[bytes]) -> str:
        field = bytearray()
        while (byte := stdout.read(1)) != b"\0":
            if not byte:
                raise GitError(self.command, self.process().poll() or -1, "stopped unexpectedly")
            field += byte
        return field.decode("utf-8", errors="surrogateescape")


#: The attribute that hands a file to git-theta when it is ``filter=theta``.
FILTER_ATTRIBUTE = "filter"


def tracked_by_theta(paths: list[str], cwd: str | None = None) -> list[str]:
    """Return those of ``paths`` that git hands to the theta filter."""
    return [path for path, value in check_attr(FILTER_ATTRIBUTE, paths, cwd).items() if value == "theta"]
