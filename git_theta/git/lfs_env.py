"""Where git-lfs sends a remote's objects, as git-lfs itself resolves it (``lfs.url``, ``remote.<name>.lfsurl``,
``.lfsconfig``, ``url.<base>.insteadOf``, or the remote's URL)."""

from __future__ import annotations

from git_theta.errors import UsageError
from git_theta.git.runner import output


def lfs_endpoint(remote: str) -> str:
    """Return the LFS endpoint URL of ``remote`` (``https://…/info/lfs``, or ``file://…`` for a local remote)."""
    remotes = output("remote").splitlines()
    if remote not in remotes:
        known = ", ".join(remotes) or "none"
        raise UsageError(f"no remote named {remote!r} (remotes: {known}); add it with git remote add, or name another")
    # `git lfs env` prints "Endpoint=<url> (auth=…)" for the default remote and "Endpoint (<name>)=…" for the others.
    endpoints: dict[str | None, str] = {}
    for line in output("lfs", "env").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("Endpoint"):
            name = key[len("Endpoint (") : -1] if key.startswith("Endpoint (") else None
            endpoints[name] = value.rsplit(" (auth=", 1)[0].strip()
    endpoint = endpoints.get(remote) or endpoints.get(None)
    if not endpoint:
        raise UsageError(f"git-lfs knows no LFS endpoint for remote {remote!r}; set remote.{remote}.lfsurl")
    return endpoint
