"""The command git runs to reach this git-theta (its executable's absolute path), and the manual git shows for it.

A bare ``git-theta`` would be looked up on PATH, which holds a virtual environment's ``bin`` only while it is active:
outside it every checkout would fail with "git-theta: not found".
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

#: Names of the console script pip installs (``.exe`` on Windows).
SCRIPT_NAMES = ("git-theta", "git-theta.exe")


def theta_words() -> list[str]:
    """The words of the command that runs this git-theta: the running script's absolute path, or ``python -m``."""
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) in SCRIPT_NAMES and os.path.isfile(script):
        return [os.path.abspath(script)]  # symlinks kept: pipx's ~/.local/bin link outlives its target's moves
    return [sys.executable, "-m", "git_theta"]


def theta_command() -> str:
    """:func:`theta_words` as one shell command (git runs filter and driver commands through the shell)."""
    return shlex.join(theta_words())


def virtual_environment(program: str) -> Path | None:
    """The virtual environment that ``program`` (a path) belongs to, if any: it stops working when that goes."""
    if sys.prefix == sys.base_prefix:
        return None
    return Path(sys.prefix) if Path(program).is_relative_to(sys.prefix) else None


def manual_page(program: str) -> Path | None:
    """The page ``git help theta`` shows (git runs ``man git-theta``), where pip installs it: None when missing.

    man looks for pages beside the ``bin`` directories on PATH (``<prefix>/share/man``); pip installs ours in
    ``<prefix>/share/man/man1``. An editable install (``pip install -e``) installs none.
    """
    prefixes = (Path(program).parent.parent, Path(os.path.realpath(program)).parent.parent, Path(sys.prefix))
    pages = [prefix / "share" / "man" / "man1" / "git-theta.1" for prefix in prefixes]
    return next((page for page in pages if page.is_file()), None)
