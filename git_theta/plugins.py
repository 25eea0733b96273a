"""The one plugin registry: checkpoint formats, update types and merge strategies, found through entry points.

Built-in plugins are registered in our own pyproject.toml exactly like third-party ones.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from git_theta.errors import GitThetaError

CHECKPOINTS = "git_theta.plugins.checkpoints"
UPDATES = "git_theta.plugins.updates"
MERGES = "git_theta.plugins.merges"


class PluginError(GitThetaError):
    """A plugin name is unknown, or the plugin cannot be loaded."""


@cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str) -> list[str]:
    """Return the names of all plugins registered in ``group``."""
    return sorted(_entry_points(group))


@cache
def load(group: str, name: str) -> Any:
    """Load the plugin ``name`` from ``group``, saying what exists or what to install when it fails."""
    kind = group.rsplit(".", 1)[-1]
    try:
        entry_point = _entry_points(group)[name]
    except KeyError:
        known = ", ".join(names(group)) or "none"
        raise PluginError(f"unknown {kind} plugin {name!r} (available: {known})") from None
    try:
        plugin = entry_point.load()
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise PluginError(
            f"the {kind} plugin {name!r} needs {missing!r}, which is not installed; "
            f"install it (for example: pip install 'git-theta[{name}]')"
        ) from exc
    if getattr(plugin, "name", None) != name:
        raise PluginError(f"{kind} plugin {name!r} ({entry_point.value}) does not declare name = {name!r}")
    return plugin
