"""Which objects a remote lacks: looked up in a local remote's LFS storage, or asked of an HTTP LFS server."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from git_theta.errors import UsageError
from git_theta.git.lfs_env import lfs_endpoint
from git_theta.git.repo import lfs_storage
from git_theta.storage.lfs_batch import missing_objects
from git_theta.storage.objects import LfsObjectStore


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
        if not path.is_file():
            missing[oid] = f"not in {store.root / 'objects'}"
        elif path.stat().st_size != size:
            missing[oid] = f"has {path.stat().st_size} bytes there instead of {size} (corrupt)"
    return missing
