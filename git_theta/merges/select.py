"""The strategies that take one version whole: ``ours``, ``theirs`` and ``base``."""

from __future__ import annotations

from git_theta.merges.base import SelectStrategy


class Ours(SelectStrategy):
    """Keep the version of the branch being merged into (HEAD)."""

    name = "ours"
    summary = "keep our version (HEAD)"

    def pick(self, count: int) -> int | None:
        return 0


class Theirs(SelectStrategy):
    """Take the version being merged in (the last revision of an N-way merge)."""

    name = "theirs"
    summary = "take their version"

    def pick(self, count: int) -> int | None:
        return count - 1


class Base(SelectStrategy):
    """Go back to the common ancestor's version (dropping the tensor if the ancestor had none)."""

    name = "base"
    summary = "go back to the common ancestor's version"

    def pick(self, count: int) -> int | None:
        return None
