"""The git plumbing of ``git theta merge``: trees, blobs, the index and commits, without touching HEAD until done."""

from __future__ import annotations

import os
import tempfile

from git_theta.git.runner import output, run

#: A tree or index entry: (mode, object id).
Entry = tuple[str, str]


def resolve_commit(rev: str, cwd: str) -> str | None:
    """The commit ``rev`` names, or None."""
    result = run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=cwd, check=False)
    return result.stdout.decode().strip() if result.returncode == 0 else None


def octopus_base(commits: list[str], cwd: str) -> str | None:
    """The best common ancestor of all ``commits``, or None when they share none."""
    result = run("merge-base", "--octopus", *commits, cwd=cwd, check=False)
    return result.stdout.decode().split()[0] if result.returncode == 0 and result.stdout.strip() else None


def tree_entries(rev: str, cwd: str) -> dict[str, Entry]:
    """``{path: (mode, oid)}`` of every file in ``rev``."""
    listing = run("ls-tree", "-r", "-z", "--full-tree", rev, cwd=cwd).stdout
    entries = {}
    for record in listing.split(b"\0"):
        info, _, path = record.partition(b"\t")
        fields = info.split()
        if len(fields) == 3 and fields[1] in (b"blob", b"commit"):
            entries[path.decode("utf-8", errors="surrogateescape")] = (fields[0].decode(), fields[2].decode())
    return entries


def unmerged_entries(cwd: str) -> dict[str, dict[int, Entry]]:
    """``{path: {stage: (mode, oid)}}`` of the index entries left in conflict."""
    listing = run("ls-files", "-u", "-z", cwd=cwd).stdout
    entries: dict[str, dict[int, Entry]] = {}
    for record in listing.split(b"\0"):
        info, _, path = record.partition(b"\t")
        fields = info.split()
        if len(fields) == 3:
            name = path.decode("utf-8", errors="surrogateescape")
            entries.setdefault(name, {})[int(fields[2])] = (fields[0].decode(), fields[1].decode())
    return entries


def read_blob(oid: str, cwd: str) -> bytes:
    """The content of a blob, unfiltered."""
    return run("cat-file", "blob", oid, cwd=cwd).stdout


def write_blob(data: bytes, cwd: str) -> str:
    """Store ``data`` as a blob as it is (no filter) and return its id."""
    return output("hash-object", "-w", "--stdin", input=data, cwd=cwd)


def is_clean(cwd: str) -> bool:
    """Tell whether the index and the tracked files match HEAD."""
    return not run("status", "--porcelain", "--untracked-files=no", cwd=cwd).stdout.strip()


def write_tree(head: str, changes: dict[str, Entry | None], cwd: str) -> str:
    """The tree of ``head`` with ``changes`` applied (None removes a path), built in a scratch index."""
    git_dir = output("rev-parse", "--absolute-git-dir", cwd=cwd)
    handle, index = tempfile.mkstemp(prefix="theta-merge-index.", dir=git_dir)
    os.close(handle)
    os.unlink(index)  # git read-tree refuses an empty file as an index
    env = {**os.environ, "GIT_INDEX_FILE": index}
    try:
        run("read-tree", head, cwd=cwd, env=env)
        lines = [
            f"{entry[0]} {entry[1]}\t{path}" if entry else f"0 {'0' * 40}\t{path}" for path, entry in changes.items()
        ]
        data = "".join(line + "\0" for line in lines).encode("utf-8", errors="surrogateescape")
        run("update-index", "-z", "--index-info", input=data, cwd=cwd, env=env)
        return run("write-tree", cwd=cwd, env=env).stdout.decode().strip()
    finally:
        if os.path.exists(index):
            os.unlink(index)


def commit_tree(tree: str, parents: list[str], message: str, cwd: str) -> str:
    """Record a commit of ``tree`` with ``parents``; return its id."""
    args = [arg for parent in parents for arg in ("-p", parent)]
    return output("commit-tree", tree, *args, input=message.encode("utf-8"), cwd=cwd)


def advance_head(old: str, new: str, message: str, cwd: str) -> None:
    """Check out commit ``new`` over ``old`` (index and working tree, through our smudge filter), then move HEAD."""
    run("read-tree", "-m", "-u", old, new, cwd=cwd)
    run("update-ref", "-m", message, "HEAD", new, old, cwd=cwd)


def resolve_path(path: str, entry: Entry, cwd: str) -> None:
    """Record ``entry`` as the resolution of the conflicted ``path`` and write it to the working tree."""
    data = f"{entry[0]} {entry[1]}\t{path}\0".encode("utf-8", errors="surrogateescape")
    remove = f"0 {'0' * 40}\t{path}\0".encode("utf-8", errors="surrogateescape")
    run("update-index", "-z", "--index-info", input=remove + data, cwd=cwd)
    run("checkout-index", "-f", "--", path, cwd=cwd)


def commit_message(rev: str, cwd: str) -> str:
    """The full message of a commit."""
    return run("show", "-s", "--format=%B", rev, "--", cwd=cwd).stdout.decode("utf-8", errors="replace")


def commit_parents(rev: str, cwd: str) -> list[str]:
    """The parents of a commit, first parent first."""
    return output("rev-list", "--parents", "-n1", rev, "--", cwd=cwd).split()[1:]
