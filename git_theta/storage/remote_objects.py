"""Which objects a remote lacks (looked up in a local remote's LFS storage, or asked of an HTTP LFS server), and
sending it just those."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from git_theta.errors import UsageError
from git_theta.git.lfs_env import lfs_endpoint
from git_theta.git.repo import lfs_storage
from git_theta.storage.lfs_batch import BatchError, missing_objects
from git_theta.storage.lfs_transfer import TransferError, push_objects
from git_theta.storage.objects import LfsObjectStore, ObjectStore


class Upload(NamedTuple):
    """What an upload sent (oid -> stored size), how many objects the remote already had, and whether we knew."""

    sent: dict[str, int]
    present: int
    #: False when the remote could not be asked (a URL, an SSH-only server): git-lfs alone skipped what it has.
    asked: bool = True

    @property
    def size(self) -> int:
        """Bytes sent (at most, when the remote was not asked)."""
        return sum(self.sent.values())


def upload_missing(remote: str, objects: dict[str, int], store: ObjectStore, progress: bool = False) -> Upload:
    """Upload those of ``objects`` (oid -> stored size) that ``remote`` lacks, asking it first which those are.

    Asking first sends nothing twice and lets a checkout made without weights push what the remote already has;
    objects that are neither here nor there fail the upload before anything is sent.
    """
    if not objects:
        return Upload({}, 0)
    try:
        lacking = sorted(missing_on_remote(remote, objects))
    except BatchError as exc:
        raise TransferError(f"uploading {len(objects)} tensor object(s) to {remote!r} failed: {exc}") from exc
    except UsageError:  # a remote named by URL, or an endpoint we cannot speak to: git-lfs asks it itself
        local = {oid: size for oid, size in sorted(objects.items()) if store.has(oid)}
        push_objects(remote, list(local), progress)
        return Upload(local, len(objects) - len(local), asked=False)
    unavailable = [oid for oid in lacking if not store.has(oid)]
    if unavailable:
        raise TransferError(
            f"{len(unavailable)} tensor object(s) that the pushed commits reference are neither stored here nor on "
            f"{remote!r} (first: {unavailable[0][:12]}); download them first (git theta pull) and push again",
            unavailable,
        )
    push_objects(remote, lacking, progress)
    return Upload({oid: objects[oid] for oid in lacking}, len(objects) - len(lacking))


def missing_on_remote(remote: str, objects: dict[str, int]) -> dict[str, str]:
    """Return ``{oid: why}`` for each of ``objects`` (oid -> stored size) that ``remote`` does not have."""
    endpoint = lfs_endpoint(remote)
    scheme = urlsplit(endpoint).scheme
    if scheme in ("http", "https"):
        return missing_objects(endpoint, objects)
    if scheme == "file":
        return _missing_in_directory(Path(unquote(urlsplit(endpoint).path)), objects)
    raise UsageError(f"cannot check remote {remote!r}: its LFS endpoint {endpoint} is neither HTTP(S) nor local")


def _missing_in_directory(repository: Path, objects: dict[str, int]) -> dict[str, str]:
    """Look objects up in a repository on this machine (git-lfs copies them into its LFS storage)."""
    if not repository.is_dir():
        raise UsageError(f"the remote repository {repository} does not exist")
    store = LfsObjectStore(lfs_storage(cwd=str(repository)))
    missing = {}
    for oid, size in objects.items():
        path = store.path(oid)
        if not os.path.isfile(path):
            missing[oid] = f"not in {os.path.join(store.root, 'objects')}"
        elif (actual := os.path.getsize(path)) != size:
            missing[oid] = f"has {actual} bytes there instead of {size} (corrupt)"
    return missing
