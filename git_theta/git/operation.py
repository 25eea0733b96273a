"""Which git operation a merge belongs to (merge, cherry-pick, revert, rebase) and the commits it combines.

The merge driver is called with three temporary files; what it knows of the operation comes from the git process
that runs it (its command line, on Linux), the environment git sets (``GITHEAD_<commit>`` during ``git merge``)
and the state files of the sequencer. A commit found that way is accepted only when its content fits: the
picked commit's version of the file is theirs and its parent's is the ancestor (the other way round for a revert).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from git_theta.git.invocation import parent_git_arguments, parent_git_command
from git_theta.git.runner import output, run

#: The operations that replay one commit's change onto HEAD: the ancestor is that commit's parent (for a revert,
#: the commit itself), theirs the commit (its parent).
PICKS = frozenset({"cherry-pick", "revert", "rebase"})
#: After a conflict: the ref each operation leaves, in the order they are looked for.
_STOPPED = (("REBASE_HEAD", "rebase"), ("CHERRY_PICK_HEAD", "cherry-pick"), ("REVERT_HEAD", "revert"))


class Operation(NamedTuple):
    """A git operation that merges: its kind (None when unknown), our commit, and the other commit when known."""

    kind: str | None
    ours: str | None
    theirs: str | None

    @property
    def is_pick(self) -> bool:
        """Tell whether it replays one commit's change onto ours (fine-tuning transfer applies)."""
        return self.kind in PICKS


def driver_operation(path: str, base_blob: str | None, theirs_blob: str, cwd: str | None = None) -> Operation:
    """The operation that runs the merge driver for ``path``, given the blob ids of the ancestor and theirs."""
    command = parent_git_command()
    git_dir = Path(output("rev-parse", "--absolute-git-dir", cwd=cwd))
    kind = command or ("rebase" if (git_dir / "rebase-merge").is_dir() else None)
    found = [commit for commit in _candidates(kind, git_dir) if _fits(kind, commit, path, base_blob, theirs_blob, cwd)]
    return Operation(kind, _commit("HEAD", cwd), _commit(found[0], cwd) if found else None)


def stopped_operation(cwd: str | None = None) -> Operation:
    """The operation that stopped on a conflict, from the refs it leaves (MERGE_HEAD, CHERRY_PICK_HEAD...)."""
    for ref, kind in _STOPPED:
        commit = _commit(ref, cwd)
        if commit:
            return Operation(kind, _commit("HEAD", cwd), commit)
    return Operation("merge", _commit("HEAD", cwd), _commit("MERGE_HEAD", cwd))


def blob_ids(files: list[str], cwd: str | None = None) -> list[str]:
    """Store the files as blobs, as they are (no filter), and return their ids."""
    return output("hash-object", "-w", "--no-filters", "--", *files, cwd=cwd).split()


def _candidates(kind: str | None, git_dir: Path) -> list[str]:
    """Commits that may be the other side: named by git's environment, its state files or its command line."""
    if kind == "merge":
        return [name[len("GITHEAD_") :] for name in sorted(os.environ) if name.startswith("GITHEAD_")]
    if kind not in PICKS:
        return []
    found = _todo_commits(git_dir / "rebase-merge" / "done")[-1:] + _todo_commits(git_dir / "sequencer" / "todo")[:1]
    return found + [arg for arg in parent_git_arguments() if not arg.startswith("-") and ".." not in arg]


def _fits(kind: str | None, commit: str, path: str, base: str | None, theirs: str, cwd: str | None) -> bool:
    """Tell whether ``commit`` holds the versions git merges: theirs (a merge), or the change picked or reverted."""
    versions = _versions(commit, path, cwd)
    if versions is None or kind == "merge":
        return versions is not None and versions[0] == theirs
    return versions == ((base, theirs) if kind == "revert" else (theirs, base))


def _todo_commits(path: Path) -> list[str]:
    """The commits of the ``pick``/``revert`` lines of a sequencer list."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    words = [line.split() for line in lines]
    return [parts[1] for parts in words if len(parts) > 1 and parts[0] in ("pick", "p", "revert")]


def _versions(commit: str, path: str, cwd: str | None) -> tuple[str | None, str | None] | None:
    """The blob ids of ``path`` in ``commit`` and in its first parent (None where absent), or None."""
    if "\n" in path or "\n" in commit:
        return None
    query = f"{commit}:{path}\n{commit}^:{path}\n".encode("utf-8", errors="surrogateescape")
    result = run("cat-file", "--batch-check=%(objectname) %(objecttype)", input=query, cwd=cwd, check=False)
    lines = result.stdout.decode(errors="replace").splitlines()
    if result.returncode != 0 or len(lines) != 2:
        return None
    blobs = [line.split()[0] if line.endswith(" blob") else None for line in lines]
    return blobs[0], blobs[1]


def _commit(rev: str, cwd: str | None) -> str | None:
    result = run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=cwd, check=False)
    return result.stdout.decode().strip() or None if result.returncode == 0 else None
