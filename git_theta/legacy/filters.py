"""What our smudge and clean filters hand to this package when they meet Git-Theta 0.2 metadata.

- smudge: the metadata is resolved (through history for incremental updates), its objects downloaded and decoded,
  and the checkpoint written by our plugin for its format.
- clean: a file checked out from legacy metadata must not show as modified. When the metadata git has for the
  path (index, else HEAD) is legacy and the file holds exactly the tensors it describes (same names, dtypes,
  shapes and bytes), the legacy metadata is returned unchanged; otherwise the file is stored in our format.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, cast

from git_theta.checkpoints.detect import detect, load
from git_theta.errors import GitThetaError
from git_theta.git.catfile import BlobReader
from git_theta.legacy import metadata
from git_theta.legacy.checkpoint import LEGACY_TYPES, Rebuilt, checkpoint_type, rebuild
from git_theta.legacy.update_chains import Blobs, Resolver

if TYPE_CHECKING:
    from git_theta.session.context import Session

#: A checked-out legacy file is copied here while its tensors are compared: in memory up to this size.
SPOOL_IN_MEMORY = 64 << 20


def smudge_writer(data: bytes, path: str, context: Session) -> Callable[[BinaryIO], object]:
    """Resolve and decode every parameter now (errors before any byte is written); return the writer."""
    if context.skip_smudge and not context.display_only:
        return lambda out: out.write(data)
    # git diff, log and show get the checkpoint itself: our diff driver reads tensors only from our own metadata.
    rebuilt = resolve(data, path, context)
    plugin = load(rebuilt.checkpoint_type)
    return lambda out: plugin().write(rebuilt.format, rebuilt.specs, rebuilt.tensors, out)


def resolve(data: bytes, path: str, context: Session) -> Rebuilt:
    """The checkpoint the legacy metadata ``data`` of ``path`` describes, ready for our plugin to write."""
    entries = metadata.parse(data, path)
    with _blobs(context) as blobs:
        resolver = Resolver(path, context.store, context.fetch, blobs)
        chains = resolver.chains(entries)
        resolver.require(chains)
        values = {keys: resolver.value(chain) for keys, chain in chains.items()}
    return rebuild(checkpoint_type(path, context.explicit_checkpoint_type(path)), values, path)


def keep_unchanged(
    path: str, previous: bytes, head: bytes, stream: BinaryIO, context: Session
) -> tuple[BinaryIO, bytes | None]:
    """Return ``(stream, previous)`` if the file is exactly what git's legacy metadata ``previous`` describes.

    Otherwise return ``(a stream of the whole file, None)`` for the ordinary clean. When the comparison cannot be
    made (an object cannot be had, the file is not a checkpoint), the file is stored in our format: its content
    is kept exactly either way.
    """
    spooled = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))  # typed IO[bytes], not BinaryIO
    shutil.copyfileobj(stream, spooled, 1 << 20)
    spooled.seek(0)
    try:
        same = _same_tensors(previous, path, head, spooled, context)
    except GitThetaError:
        same = False
    if same:
        spooled.close()
        return stream, previous
    spooled.seek(0)
    return spooled, None


def pass_through(data: bytes, path: str) -> bytes:
    """A legacy metadata file in the working tree (a checkout without weights) is stored as it is, if valid."""
    metadata.parse(data, path)
    return data


def _same_tensors(previous: bytes, path: str, head: bytes, file: BinaryIO, context: Session) -> bool:
    entries = metadata.parse(previous, path)
    explicit = context.explicit_checkpoint_type(path)
    plugin = detect(path, head, LEGACY_TYPES.get(explicit, explicit) if explicit else None)
    _, tensors = plugin().read(file, path)
    found = {t.spec.name: (t.spec.dtype, t.spec.shape, hashlib.sha256(t.data).digest()) for t in tensors}
    # Cheap test first: names and shapes, from the metadata alone.
    if sorted(found) != sorted(entry.name for entry in entries.values()):
        return False
    if any(found[entry.name][1] != entry.shape for entry in entries.values()):
        return False
    rebuilt = resolve(previous, path, context)
    for spec, data in zip(rebuilt.specs, rebuilt.tensors, strict=True):
        if found[spec.name] != (spec.dtype, spec.shape, hashlib.sha256(data).digest()):
            return False
    return True


@contextmanager
def _blobs(context: Session) -> Iterator[Blobs]:
    """The filter's blob reader, or one of our own for the time of one call."""
    shared = context.blobs
    if shared is not None:
        yield shared
        return
    with BlobReader() as reader:
        yield reader
