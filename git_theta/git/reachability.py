"""What keeps objects alive, and the metadata blobs it reaches.

git's own ``git gc`` keeps what refs, reflogs and the index reach (``git rev-list --all --reflog --indexed-objects``,
which covers refs/stash and every worktree's HEAD and index); an operation in progress (merge, cherry-pick, revert,
rebase) also holds commits in pseudo-refs such as ``MERGE_HEAD``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from git_theta.git.catfile import BlobReader
from git_theta.git.runner import output, run
from git_theta.metadata import CheckpointMetadata, MetadataError, is_metadata

#: Pseudo-refs of operations in progress; ``--all`` already includes HEAD.
PSEUDO_REFS = ("ORIG_HEAD", "MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "REBASE_HEAD", "AUTO_MERGE")
#: Metadata files are small; larger blobs are never ours and are not read.
MAX_METADATA_SIZE = 256 << 20


def reachable_revisions(reflog: bool) -> list[str]:
    """Return ``git rev-list`` arguments for every ref, the index (all worktrees), and optionally the reflogs."""
    revisions = ["--all", "--indexed-objects"] + (["--reflog"] if reflog else [])
    paths = output("rev-parse", *(arg for name in PSEUDO_REFS for arg in ("--git-path", name))).splitlines()
    for name, path in zip(PSEUDO_REFS, paths, strict=True):
        if Path(path).is_file() and run("rev-parse", "--verify", "--quiet", name, check=False).returncode == 0:
            revisions.append(name)
    return revisions


def metadata_blobs(revisions: list[str]) -> Iterator[tuple[str, bytes]]:
    """Yield ``(path, content)`` of each blob that ``revisions`` reach and that looks like git-theta metadata."""
    listing = run("rev-list", "--objects", *revisions, "--").stdout
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
            if data is not None and is_metadata(data):
                yield paths[oid], data


def needed_objects(include: list[str], exclude: list[str]) -> dict[str, int]:
    """Return every object (oid -> stored size) the metadata in ``include`` but not in ``exclude`` needs."""
    return {
        oid: size for _, metadata in metadata_in_commits(include, exclude) for oid, size in metadata.objects().items()
    }


def existing_commits(names: list[str]) -> list[str]:
    """Return those of ``names`` (object ids) that this repository has: a remote's commits we never fetched are not."""
    if not names:
        return []
    checks = run("cat-file", "--batch-check=%(objectname) %(objecttype)", input="\n".join(names).encode() + b"\n")
    return [fields[0] for fields in map(str.split, checks.stdout.decode().splitlines()) if fields[-1] != "missing"]


def advertised(remote: str) -> list[str]:
    """Return the object ids that ``remote`` (a name or URL) advertises for its refs, or none if it cannot be asked."""
    result = run("ls-remote", "--", remote, check=False)
    if result.returncode != 0:
        return []
    return sorted({line.split()[0] for line in result.stdout.decode(errors="replace").splitlines() if line.strip()})


def metadata_in_commits(include: list[str], exclude: list[str]) -> Iterator[tuple[str, CheckpointMetadata]]:
    """Yield ``(path, metadata)`` for the metadata in commits reachable from ``include`` but not from ``exclude``.

    Metadata this version cannot read is an error, not a skip: its objects would be left behind.
    """
    for path, data in metadata_blobs([*include, "--not", *exclude]):
        try:
            yield path, CheckpointMetadata.loads(data)
        except MetadataError as exc:
            raise MetadataError(f"{path}: {exc}") from exc
