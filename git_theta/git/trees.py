"""Listing the files of a revision, the index and the working tree, and the commits that touched a path.

Every function runs git at ``cwd`` (the top of the working tree) and speaks paths relative to it.
"""

from __future__ import annotations

from typing import NamedTuple

from git_theta.git.runner import finish, output, run, start_side_by_side

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_SEPARATOR = "\x1f"


class Commit(NamedTuple):
    """One commit of a path's history (a NamedTuple: the filter imports this module, and ``dataclasses`` costs
    5 ms to import)."""

    oid: str
    parent: str | None
    short: str
    date: str
    subject: str
    #: Every parent, first parent first (a merge commit has several).
    parents: tuple[str, ...] = ()


def tree_blobs(rev: str, pathspecs: list[str], cwd: str) -> dict[str, str]:
    """Return ``{path: blob id}`` for the files of ``rev`` matching ``pathspecs`` (all files when empty)."""
    return _tree_records(run("ls-tree", "-r", "-z", "--full-tree", rev, "--", *pathspecs, cwd=cwd).stdout)


def index_blobs(pathspecs: list[str], cwd: str) -> dict[str, str]:
    """Return ``{path: blob id}`` for the merged (stage 0) entries of the index."""
    return _index_records(run("ls-files", "-s", "-z", "--", *pathspecs, cwd=cwd).stdout)


class Listing:
    """Every file of the index and of HEAD, listed by two git processes side by side: started at once (on a thread
    of their own, see ``runner.Launched``), read by ``blobs`` when needed."""

    def __init__(self, cwd: str) -> None:
        self._started = start_side_by_side(
            ["ls-files", "-s", "-z", "--"], ["ls-tree", "-r", "-z", "--full-tree", "HEAD", "--"], cwd=cwd
        )

    def blobs(self) -> tuple[dict[str, str], dict[str, str]]:
        """``({path: blob id} of the index, the same of HEAD)``; HEAD's is empty before the first commit."""
        index_process, head_process = self._started.result()
        head = finish(head_process, check=False)  # fails before the first commit
        index = finish(index_process)
        return _index_records(index.stdout), _tree_records(head.stdout) if head.returncode == 0 else {}

    def stop(self) -> None:
        """End the listing unread: a large repository's is not read out only to be thrown away."""
        for process in self._started.result():
            process.kill()
            finish(process, check=False)


def _tree_records(listing: bytes) -> dict[str, str]:
    blobs = {}
    for record in listing.split(b"\0"):
        info, _, path = record.partition(b"\t")
        fields = info.split()
        if len(fields) == 3 and fields[1] == b"blob":
            blobs[path.decode("utf-8", errors="surrogateescape")] = fields[2].decode()
    return blobs


def _index_records(listing: bytes) -> dict[str, str]:
    blobs = {}
    for record in listing.split(b"\0"):
        info, _, path = record.partition(b"\t")
        fields = info.split()
        if len(fields) == 3 and fields[2] == b"0":
            blobs[path.decode("utf-8", errors="surrogateescape")] = fields[1].decode()
    return blobs


def unmerged_paths(pathspecs: list[str], cwd: str) -> set[str]:
    """Return the paths whose index entries are in conflict (stages 1 to 3)."""
    listing = run("ls-files", "-u", "-z", "--", *pathspecs, cwd=cwd).stdout
    return {
        record.partition(b"\t")[2].decode("utf-8", errors="surrogateescape")
        for record in listing.split(b"\0")
        if record
    }


def worktree_changes(pathspecs: list[str], cwd: str) -> set[str]:
    """Return the index entries whose working tree file may differ from the index (by git's stat check)."""
    listing = run("diff-files", "-z", "--name-only", "--", *pathspecs, cwd=cwd).stdout
    return {item.decode("utf-8", errors="surrogateescape") for item in listing.split(b"\0") if item}


def merge_base(first: str, second: str, cwd: str) -> str:
    """Return the best common ancestor of two commits."""
    return output("merge-base", first, second, cwd=cwd)


def path_history(revisions: list[str], path: str, max_count: int | None, cwd: str) -> list[Commit]:
    """Return the commits reachable from ``revisions`` that changed ``path``, newest first."""
    fields = _SEPARATOR.join(("%H", "%P", "%h", "%ad", "%s"))
    limit = [f"--max-count={max_count}"] if max_count is not None else []
    text = output("log", f"--format={fields}", "--date=short", *limit, *revisions, "--", path, cwd=cwd)
    commits = []
    for line in text.splitlines():
        oid, parents, short, date, subject = line.split(_SEPARATOR, 4)
        parent_ids = tuple(parents.split())
        commits.append(Commit(oid, parent_ids[0] if parent_ids else None, short, date, subject, parent_ids))
    return commits
