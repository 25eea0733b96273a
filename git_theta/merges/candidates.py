"""The candidates of a greedy soup, built one at a time into a directory an evaluation command reads.

A candidate is a set of ingredients (commits); its checkpoints are their uniform average, merged exactly as the
final ``git theta merge`` commit will merge them (same sides, weights and rules), so the soup that scored is the
soup committed. Merged tensors go to a scratch object store in the git directory, which reads through to the
repository's, and the checkpoints are written from it by the smudge filter: both stream, tensor by tensor. The
scratch store and the directory are emptied after each evaluation and removed at the end.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

from git_theta.git import merging
from git_theta.git.attributes import tracked_by_theta
from git_theta.git.repo import filter_settings, git_dir
from git_theta.merges.base import load_strategy
from git_theta.merges.choose import Chooser
from git_theta.merges.nway import merge_trees
from git_theta.storage.objects import LfsObjectStore, ObjectStore, ObjectWriter

#: The strategy of every soup: the mean of its ingredients (HEAD weighs 0 unless it is one).
SOUP = "uniform-soup"


class ScratchStore:
    """New objects go to ``scratch``; reads find them there, or in the repository's ``main`` store."""

    def __init__(self, scratch: LfsObjectStore, main: ObjectStore) -> None:
        self.scratch, self.main = scratch, main

    def has(self, oid: str) -> bool:
        """Tell whether the object is in either store."""
        return self.scratch.has(oid) or self.main.has(oid)

    def open(self, oid: str) -> BinaryIO:
        """Open the object, from the scratch store first."""
        return self.scratch.open(oid) if self.scratch.has(oid) else self.main.open(oid)

    def writer(self) -> ObjectWriter:
        """Start writing a new object to the scratch store."""
        return self.scratch.writer()

    def put(self, data: bytes) -> tuple[str, int]:
        """Store ``data`` in the scratch store."""
        return self.scratch.put(data)


class Workspace:
    """A scratch store and the candidate directory, under the git directory (``theta-soup-PID``)."""

    def __init__(self, head: str, cwd: str) -> None:
        self.head, self.cwd = head, cwd
        self.root = git_dir(cwd) / f"theta-soup-{os.getpid()}"
        self.directory = self.root / "candidate"
        self.main = LfsObjectStore(filter_settings(cwd).storage)
        self.store = ScratchStore(LfsObjectStore(self.root / "objects"), self.main)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def ingredient(self, commit: str) -> Path:
        """Write the checkpoints of ``commit`` as they are; return the directory."""
        self.clear()
        return self._write(merging.tree_entries(commit, self.cwd))

    def soup(self, commits: list[str]) -> Path:
        """Write the uniform average of ``commits`` (HEAD weighs 0 unless among them); return the directory."""
        self.clear()
        parents, weights = soup_sides(self.head, commits)
        base = merging.octopus_base(parents, self.cwd)
        trees = [merging.tree_entries(parent, self.cwd) for parent in parents]
        base_tree = merging.tree_entries(base, self.cwd) if base else {}
        chooser = Chooser(load_strategy(SOUP))
        changes = merge_trees(base_tree, trees, chooser, weights, self.cwd, self.store)
        tree = {path: entry for path, entry in {**trees[0], **changes}.items() if entry is not None}
        return self._write(tree)

    def clear(self) -> None:
        """Forget the last candidate: its files and the objects only it needed."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.store = ScratchStore(LfsObjectStore(self.root / "objects"), self.main)  # it caches the folders it made

    def _write(self, tree: dict[str, merging.Entry]) -> Path:
        from git_theta.filters.smudge import smudge
        from git_theta.session.context import Session

        self.directory.mkdir(parents=True)
        context = Session.for_repository()
        context.store, context.skip_smudge = self.store, False  # the evaluation needs the weights, even lazily
        try:
            for path in tracked_by_theta(sorted(tree), self.cwd):
                target = self.directory / path
                target.parent.mkdir(parents=True, exist_ok=True)
                write = smudge(merging.read_blob(tree[path][1], self.cwd), path, context)
                with open(target, "wb") as out:
                    write(out)
        finally:
            context.close()
        return self.directory


def soup_sides(head: str, commits: list[str]) -> tuple[list[str], list[float]]:
    """The sides of the merge that makes a soup of ``commits``: HEAD first, and their weights."""
    parents = list(dict.fromkeys([head, *commits]))
    return parents, [1.0 if head in commits else 0.0] + [1.0] * (len(parents) - 1)
