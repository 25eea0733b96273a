"""Checking that every referenced tensor object is present and intact, locally and on a remote."""

from __future__ import annotations

import os
import shlex
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from git_theta.git.attributes import tracked_by_theta
from git_theta.git.catfile import BlobReader
from git_theta.git.reachability import reachable_revisions
from git_theta.git.runner import run
from git_theta.git.tracking import BINARY, lines_without_binary
from git_theta.legacy.sniff import is_legacy_metadata
from git_theta.maintenance.references import Usage, referenced_objects
from git_theta.pipeline import workers
from git_theta.storage.objects import LfsObjectStore
from git_theta.storage.remote_objects import missing_on_remote
from git_theta.storage.verify import object_problem, piece_problem

#: Git-Theta 0.2 metadata takes about 1 KiB per parameter: larger blobs are not read.
MAX_LEGACY_METADATA = 64 << 20


def referenced() -> tuple[dict[str, Usage], list[str]]:
    """Objects referenced by every ref and the index, and the problems of metadata that cannot be read."""
    return referenced_objects(reachable_revisions(reflog=False))


def absent(store: LfsObjectStore, usages: dict[str, Usage]) -> list[str]:
    """Return the referenced objects that are not stored locally (not downloaded yet, or lost)."""
    return [oid for oid in sorted(usages) if not store.has(oid)]


def local_problems(store: LfsObjectStore, usages: dict[str, Usage], skip: Collection[str] = ()) -> list[str]:
    """Return one line per object (but those in ``skip``) that is missing locally or corrupt (hash, size, header or
    content)."""

    def check(oid: str) -> list[str]:
        usage = usages[oid]
        problems = [object_problem(store.path(oid), oid, entry) for entry in usage.entries if entry.packed is None]
        for entry in usage.entries:  # the pieces of a pack: the pack is read and checked once
            if entry.packed is not None and (problem := piece_problem(store, oid, entry)):
                problems.append(problem)
                break
        return [f"{usage.describe(oid)} {problem}" for problem in dict.fromkeys(problems) if problem]

    with ThreadPoolExecutor(workers()) as executor:  # sha256 and zstd release the GIL
        checked = sorted(set(usages) - set(skip))
        return [line for lines in executor.map(check, checked) for line in lines]


class Absent(NamedTuple):
    """What became of the objects not stored locally: problems (one line each), and how many the remote has."""

    problems: list[str]
    on_remote: int


def sort_absent(
    oids: list[str], usages: dict[str, Usage], remote: str | None, lacking: dict[str, str] | None, why: str = ""
) -> Absent:
    """Tell objects not downloaded yet (``remote`` has them) from lost ones (``lacking`` on it, or no remote).

    ``lacking`` is None when the remote could not be asked (``why``): then nothing is known to be recoverable.
    """
    if remote is None:
        return Absent([f"{usages[oid].describe(oid)} is missing locally" for oid in oids], 0)
    if lacking is None:
        where = f"remote {remote!r} could not be asked whether it has it: {why}"
        return Absent([f"{usages[oid].describe(oid)} is missing locally ({where})" for oid in oids], 0)
    lost = [oid for oid in oids if oid in lacking]
    problems = [
        f"{usages[oid].describe(oid)} is missing locally and on remote {remote!r} ({lacking[oid]})" for oid in lost
    ]
    return Absent(problems, len(oids) - len(lost))


def lacking_on_remote(remote: str, usages: dict[str, Usage], oids: Collection[str]) -> dict[str, str]:
    """Return ``{oid: why}`` for those of ``oids`` that ``remote`` does not have."""
    return missing_on_remote(remote, {oid: usages[oid].entries[0].stored for oid in oids})


def remote_problems(remote: str, usages: dict[str, Usage], lacking: dict[str, str]) -> list[str]:
    """Return one line per referenced object that ``remote`` does not have (``lacking``: oid -> why)."""
    return [
        f"{usages[oid].describe(oid)} is missing on remote {remote!r} ({why})" for oid, why in sorted(lacking.items())
    ]


def legacy_paths() -> list[str]:
    """Tracked checkpoints whose metadata in some commit (or the index) is Git-Theta 0.2's, which fsck cannot check."""
    listing = run("rev-list", "--objects", *reachable_revisions(reflog=False), "--").stdout
    oids: dict[str, list[str]] = {}
    for line in listing.decode("utf-8", errors="surrogateescape").splitlines():
        oid, _, path = line.partition(" ")
        if path:
            oids.setdefault(path, []).append(oid)
    candidates = [oid for path in tracked_by_theta(sorted(oids)) for oid in oids[path]]
    if not candidates:
        return []
    checks = run("cat-file", "--batch-check", input="\n".join(candidates).encode() + b"\n").stdout.decode()
    found = []
    with BlobReader() as blobs:
        for line in checks.splitlines():
            oid, kind, size = line.split()
            if kind == "blob" and int(size) <= MAX_LEGACY_METADATA and is_legacy_metadata(blobs.read(oid) or b""):
                found.append(oid)
    paths = {oid: path for path, listed in oids.items() for oid in listed}
    return sorted({paths[oid] for oid in found})


def attribute_problems() -> list[str]:
    """Return one line per attributes line that hands files to git-theta without ``-text`` (older versions wrote so)."""
    problems = []
    for line in lines_without_binary():
        pattern = shlex.quote(line.text.split()[0])
        fix = f"run: git theta track {pattern}" if line.top_level else f"add {BINARY} at its end"
        problems.append(
            f"{os.path.relpath(line.path)}:{line.number}: {line.text!r} lacks {BINARY}, so with core.autocrlf or "
            f"core.eol=crlf git converts the line endings of the metadata and checkouts break; {fix}"
        )
    return problems
