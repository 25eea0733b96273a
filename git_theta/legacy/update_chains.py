"""Resolving Git-Theta 0.2 parameters: incremental updates name the commit whose value they change.

A ``sparse``, ``low-rank`` or ``ia3`` entry is an update of the value the same parameter had in the metadata of the
same path at ``last_commit``; that entry may be an update too, back to a ``dense`` one. We walk that chain through
git, download every object the chains need in one batch (through git-lfs), then apply the updates oldest first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from git_theta.dtypes import element_count
from git_theta.git.runner import run
from git_theta.legacy import metadata, objects, updates
from git_theta.legacy.errors import LegacyError
from git_theta.legacy.metadata import LegacyEntry
from git_theta.storage.lfs_transfer import download_missing
from git_theta.storage.objects import ObjectStore

#: Longer chains than this are taken for a loop in damaged history.
MAX_CHAIN = 10_000


class Blobs(Protocol):
    """Reads blobs by name (``<commit>:<path>``); None when there is no such blob."""

    def read(self, name: str) -> bytes | None: ...


class Resolver:
    """The values of one legacy checkpoint's parameters, read from its objects and its history."""

    def __init__(
        self, path: str, store: ObjectStore, fetch: Callable[[dict[str, int]], None] | None, blobs: Blobs
    ) -> None:
        self.path = path
        self._store = store
        self._fetch = fetch
        self._blobs = blobs
        self._at: dict[str, dict[tuple[str, ...], LegacyEntry]] = {}

    def chains(self, entries: dict[tuple[str, ...], LegacyEntry]) -> dict[tuple[str, ...], list[LegacyEntry]]:
        """For each parameter, its entry and the entries it updates, newest first, ending with a dense one."""
        return {keys: self._chain(entry) for keys, entry in entries.items()}

    def require(self, chains: dict[tuple[str, ...], list[LegacyEntry]]) -> None:
        """Download the objects the chains need that are not stored locally; fail if some cannot be had."""
        needed = {entry.oid: entry.size for chain in chains.values() for entry in chain}
        missing, reason = download_missing(self._store, needed, self._fetch)
        if missing:
            raise LegacyError(
                f"{self.path}: {len(missing)} Git-Theta 0.2 object(s) are not stored locally and could not be "
                f"downloaded (first: {sorted(missing)[0][:12]}; {reason}); make sure the remote has them, "
                "then check out again"
            )

    def value(self, chain: list[LegacyEntry]) -> np.ndarray:
        """The parameter's value: its dense base with every update applied, oldest first."""
        top = chain[0]
        limit = max(element_count(top.shape), 16)
        value: np.ndarray | None = None
        for entry in reversed(chain):
            label = f"{self.path}: parameter {entry.name!r}"
            with self._store.open(entry.oid) as stream:
                data = stream.read()
            parts = objects.decode_object(data, entry.oid, max(limit, element_count(entry.shape)), label)
            value = updates.apply(entry.update_type, parts, value, label)
        assert value is not None
        if tuple(value.shape) != top.shape:
            raise LegacyError(
                f"{self.path}: parameter {top.name!r} rebuilt with shape {tuple(value.shape)}, but its metadata "
                f"says {top.shape}; its objects are corrupt"
            )
        return value

    def _chain(self, entry: LegacyEntry) -> list[LegacyEntry]:
        chain = [entry]
        while chain[-1].update_type != "dense":
            current = chain[-1]
            if len(chain) > MAX_CHAIN:
                raise LegacyError(f"{self.path}: parameter {entry.name!r}: its updates form a loop in the history")
            if current.last_commit is None:
                raise LegacyError(
                    f"{self.path}: parameter {entry.name!r} is a {current.update_type} update that names no "
                    "previous commit; the Git-Theta 0.2 metadata is damaged"
                )
            previous = self._metadata_at(current.last_commit, entry).get(current.keys)
            if previous is None:
                raise LegacyError(
                    f"{self.path}: parameter {entry.name!r} is a {current.update_type} update of commit "
                    f"{current.last_commit[:12]}, where the file has no such parameter; the history was rewritten"
                )
            chain.append(previous)
        return chain

    def _metadata_at(self, commit: str, entry: LegacyEntry) -> dict[tuple[str, ...], LegacyEntry]:
        if commit not in self._at:
            data = self._blobs.read(f"{commit}:{self.path}")
            if data is None:
                raise LegacyError(self._missing_previous(commit, entry))
            self._at[commit] = metadata.parse(data, f"{self.path} at {commit[:12]}")
        return self._at[commit]

    def _missing_previous(self, commit: str, entry: LegacyEntry) -> str:
        what = f"{self.path}: parameter {entry.name!r} is stored as an update of commit {commit[:12]}"
        if run("cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode != 0:
            return (
                f"{what}, which this repository does not have (a shallow clone, or rewritten history); "
                "fetch the full history (git fetch --unshallow) and check out again"
            )
        return f"{what}, where the file does not exist; the history was rewritten (renamed?)"
