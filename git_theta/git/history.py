"""Finding the checkpoint metadata that commits reference."""

from __future__ import annotations

from collections.abc import Iterator

from git_theta.git.catfile import BlobReader
from git_theta.git.runner import run
from git_theta.metadata import CheckpointMetadata, MetadataError, is_metadata

#: Metadata files are small; larger blobs are never ours and are not read.
MAX_METADATA_SIZE = 256 << 20


def metadata_in_commits(include: list[str], exclude: list[str]) -> Iterator[tuple[str, CheckpointMetadata]]:
    """Yield ``(path, metadata)`` for every metadata blob in commits reachable from ``include`` but not ``exclude``."""
    listing = run("rev-list", "--objects", *include, "--not", *exclude, "--").stdout
    paths: dict[str, str] = {}
    for line in listing.decode("utf-8", errors="surrogateescape").splitlines():
        oid, _, path = line.partition(" ")
        if path:
            paths.setdefault(oid, path)
    if not paths:
        return
    checks = run(
        "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)", input="\n".join(paths).encode() + b"\n"
    ).stdout.decode()
    with BlobReader() as blobs:
        for line in checks.splitlines():
            oid, kind, size = line.split()
            if kind != "blob" or int(size) > MAX_METADATA_SIZE:
                continue
            data = blobs.read(oid)
            if data is None or not is_metadata(data):
                continue
            try:
                yield paths[oid], CheckpointMetadata.loads(data)
            except MetadataError:
                continue
