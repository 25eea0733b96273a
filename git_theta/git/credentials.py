"""Asking git's credential helpers for a password (``git credential fill``), and telling them how it went."""

from __future__ import annotations

from git_theta.git.runner import run


def fill(url: str) -> tuple[str, str] | None:
    """Return ``(username, password)`` for ``url`` from git's credential helpers (or prompt), or None."""
    result = run("credential", "fill", input=f"url={url}\n\n".encode(), check=False)
    if result.returncode != 0:
        return None
    fields = dict(line.partition("=")[::2] for line in result.stdout.decode(errors="replace").splitlines())
    if "username" not in fields or "password" not in fields:
        return None
    return fields["username"], fields["password"]


def approve(url: str, username: str, password: str) -> None:
    """Tell the helpers that the credentials worked (they may store them)."""
    _report("approve", url, username, password)


def reject(url: str, username: str, password: str) -> None:
    """Tell the helpers that the credentials were refused (they may forget them)."""
    _report("reject", url, username, password)


def _report(action: str, url: str, username: str, password: str) -> None:
    text = f"url={url}\nusername={username}\npassword={password}\n\n"
    run("credential", action, input=text.encode(), check=False)
