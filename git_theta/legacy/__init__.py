"""Repositories written by the original Git-Theta 0.2: checked out, and kept clean by this git-theta
(``git theta migrate``, in maintenance/migrate.py, rewrites them in our format).

    sniff.py          detection of its metadata file from the first bytes
    metadata.py       its metadata file (one JSON entry per parameter): parsing
    objects.py        its LFS objects (msgpack of tensorstore zarr arrays) -> numpy arrays
    updates.py        its update types (dense, sparse, low-rank, ia3): a parameter's value from its update
    update_chains.py  incremental updates resolved through the commits they name; objects fetched through git-lfs
    checkpoint.py     the checkpoint rebuilt through our checkpoint plugins
    filters.py        what our smudge and clean filters hand to this package

Only ``is_legacy_metadata`` is imported by the filters on every call; the rest (and tensorstore) only when a
legacy file is met.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from git_theta.legacy.sniff import is_legacy_metadata

if TYPE_CHECKING:
    from collections.abc import Callable

    from git_theta.session.context import Session

__all__ = ["is_legacy_metadata", "keep_unchanged", "pass_through", "smudge_writer"]


def smudge_writer(data: bytes, path: str, context: Session) -> Callable[[BinaryIO], object]:
    """Check that the legacy checkpoint ``data`` describes can be rebuilt; return a function that writes it."""
    from git_theta.legacy import filters

    return filters.smudge_writer(data, path, context)


def keep_unchanged(path: str, head: bytes, stream: BinaryIO, context: Session) -> tuple[BinaryIO, bytes | None]:
    """Return the legacy metadata of ``path`` if the file holds exactly its tensors, else None, with the file."""
    previous = context.previous_blob(path)
    if previous is None or not is_legacy_metadata(previous):
        return stream, None  # the usual case, decided without importing the rest of this package (and numpy)
    from git_theta.legacy import filters

    return filters.keep_unchanged(path, previous, head, stream, context)


def pass_through(data: bytes, path: str) -> bytes:
    """Store a legacy metadata file found in the working tree (a checkout without weights) unchanged."""
    from git_theta.legacy import filters

    return filters.pass_through(data, path)
