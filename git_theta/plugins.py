"""The one plugin registry: checkpoint formats, update types and merge strategies, found through entry points.

Built-in plugins are registered in our own pyproject.toml exactly like third-party ones, and that is the only place
they are named. They are read from git-theta's installed ``entry_points.txt`` directly: ``importlib.metadata`` costs
about 30 ms of imports and a scan of every installed package, paid by every checkout otherwise. Other packages'
plugins are looked up through ``importlib.metadata`` when a name is not one of ours.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from git_theta.errors import GitThetaError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

CHECKPOINTS = "git_theta.plugins.checkpoints"
UPDATES = "git_theta.plugins.updates"
MERGES = "git_theta.plugins.merges"


class PluginError(GitThetaError):
    """A plugin name is unknown, or the plugin cannot be loaded."""


@cache
def entry_points(group: str) -> dict[str, EntryPoint]:
    """Return the entry points registered in ``group``, by name."""
    from importlib.metadata import entry_points as find

    return {ep.name: ep for ep in find(group=group)}


def names(group: str) -> list[str]:
    """Return the names of all plugins registered in ``group``."""
    return sorted(set(entry_points(group)) | set(own_entry_points().get(group, {})))


def own_names(group: str) -> list[str]:
    """Return the names of git-theta's own plugins in ``group`` (no scan of other packages)."""
    return sorted(own_entry_points().get(group, {}))


@cache
def own_entry_points() -> dict[str, dict[str, str]]:
    """git-theta's own entry points, group -> name -> ``module:attribute``, from its installed metadata."""
    for folder in sys.path:
        try:
            found = [name for name in os.listdir(folder or ".") if name.startswith("git_theta-")]
        except OSError:
            continue
        for name in found:
            if name.endswith(".dist-info"):
                return _parse_entry_points(os.path.join(folder or ".", name, "entry_points.txt"))
    return {}


def _parse_entry_points(path: str) -> dict[str, dict[str, str]]:
    """The ``[group]`` sections of ``name = value`` lines of an ``entry_points.txt`` file (an INI subset)."""
    groups: dict[str, dict[str, str]] = {}
    section: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                line = line.strip()
                if line.startswith("[") and line.endswith("]"):
                    section = groups.setdefault(line[1:-1].strip(), {})
                elif "=" in line and not line.startswith(("#", ";")):
                    name, _, value = line.partition("=")
                    section[name.strip()] = value.strip()
    except OSError:
        return {}
    return groups


@cache
def load(group: str, name: str) -> Any:
    """Load the plugin ``name`` from ``group``, saying what exists or what to install when it fails."""
    kind = group.rsplit(".", 1)[-1]
    target = own_entry_points().get(group, {}).get(name)
    if target is None:
        entry_point = entry_points(group).get(name)
        if entry_point is None:
            known = ", ".join(names(group)) or "none"
            raise PluginError(f"unknown {kind} plugin {name!r} (available: {known})")
        target = entry_point.value
    try:
        module, _, attribute = target.partition(":")
        plugin = getattr(import_module(module), attribute)
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise PluginError(
            f"the {kind} plugin {name!r} needs {missing!r}, which is not installed; "
            f"install it (for example: pip install 'git-theta[{name}]')"
        ) from exc
    if getattr(plugin, "name", None) != name:
        raise PluginError(f"{kind} plugin {name!r} ({target}) does not declare name = {name!r}")
    return plugin
