"""Removing the tensor objects that nothing references any more."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from git_theta.git.index_lock import index_locks
from git_theta.git.reachability import reachable_revisions
from git_theta.maintenance.references import referenced_oids
from git_theta.storage.codec import MAGIC
from git_theta.storage.objects import LfsObjectStore
from git_theta.storage.packs import MAGIC as PACK_MAGIC

#: A temporary file untouched this long (seconds) is left over by a failed or killed write, not one in progress.
STALE_TEMPORARY = 3600


@dataclass
class Collected:
    """What a collection removed (or would remove): ``(oid, bytes)`` per object."""

    objects: list[tuple[str, int]] = field(default_factory=list)
    kept: int = 0
    temporaries: list[tuple[Path, int]] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes removed in all."""
        return sum(size for _, size in self.objects)


def collect_garbage(store: LfsObjectStore, common_dir: Path, dry_run: bool) -> Collected:
    """Remove git-theta objects that no ref, reflog entry, stash or index entry references.

    The index lock is held meanwhile, so no ``git add`` or ``git stash`` can reference an object after we looked;
    objects written after we started are kept all the same. Plain Git LFS objects are never touched. Each removal
    is one atomic unlink of an unreferenced object, so an interrupted collection leaves a consistent store. Our
    temporary files that no write has touched for ``STALE_TEMPORARY`` seconds go too.
    """
    started = time.time()
    if dry_run:
        return _collect(store, started, dry_run)
    with index_locks(common_dir):
        return _collect(store, started, dry_run)


def _collect(store: LfsObjectStore, started: float, dry_run: bool) -> Collected:
    keep = referenced_oids(reachable_revisions(reflog=True))
    result = Collected()
    for oid, path in sorted(store.stored()):
        if oid in keep:
            result.kept += 1
        elif _is_garbage(path, started):
            size = path.stat().st_size if dry_run else store.remove(oid)
            result.objects.append((oid, size))
    result.temporaries = _stale_temporaries(store, started - STALE_TEMPORARY, dry_run)
    return result


def _stale_temporaries(store: LfsObjectStore, before: float, dry_run: bool) -> list[tuple[Path, int]]:
    """Remove (unless ``dry_run``) our temporary files last written before ``before``; return them with their sizes."""
    stale = []
    for path in sorted(store.temporaries()):
        try:
            status = path.stat()
            if status.st_mtime >= before:
                continue
            if not dry_run:
                path.unlink()
        except FileNotFoundError:  # finished (renamed into place) or removed meanwhile
            continue
        stale.append((path, status.st_size))
    return stale


def _is_garbage(path: Path, started: float) -> bool:
    """Tell whether an unreferenced object may go: one of ours (an object or a pack, not plain LFS), not written
    while we ran."""
    try:
        if path.stat().st_mtime >= started:
            return False
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) in (MAGIC, PACK_MAGIC)
    except FileNotFoundError:
        return False
