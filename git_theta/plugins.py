"""The one plugin registry: checkpoint formats, update types and merge strategies, found through entry points.

Built-in plugins are registered in our own pyproject.toml exactly like third-party ones. ``BUILTIN`` repeats those
declarations so that loading a built-in plugin does not need ``importlib.metadata`` (about 30 ms of imports, paid by
every checkout otherwise); tests/unit/test_plugins.py keeps the two in step.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from git_theta.errors import GitThetaError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

CHECKPOINTS = "git_theta.plugins.checkpoints"
UPDATES = "git_theta.plugins.updates"
MERGES = "git_theta.plugins.merges"

BUILTIN: dict[str, dict[str, str]] = {
    CHECKPOINTS: {
        "safetensors": "git_theta.checkpoints.safetensors:SafetensorsCheckpoint",
        "torch": "git_theta.checkpoints.torch:TorchCheckpoint",
        "npz": "git_theta.checkpoints.numpy:NpzCheckpoint",
        "flax": "git_theta.checkpoints.flax:FlaxCheckpoint",
        "gguf": "git_theta.checkpoints.gguf:GgufCheckpoint",
    },
    UPDATES: {
        "dense": "git_theta.updates.dense:DenseUpdate",
        "delta": "git_theta.updates.delta:DeltaUpdate",
        "sparse": "git_theta.updates.sparse:SparseUpdate",
        "low-rank": "git_theta.updates.low_rank:LowRankUpdate",
        "ia3": "git_theta.updates.ia3:Ia3Update",
    },
    MERGES: {
        "ours": "git_theta.merges.select:Ours",
        "theirs": "git_theta.merges.select:Theirs",
        "base": "git_theta.merges.select:Base",
        "average": "git_theta.merges.average:Average",
        "task-arithmetic": "git_theta.merges.task_arithmetic:TaskArithmetic",
        "ties": "git_theta.merges.ties:Ties",
        "dare": "git_theta.merges.dare:Dare",
        "slerp": "git_theta.merges.slerp:Slerp",
        "breadcrumbs": "git_theta.merges.breadcrumbs:Breadcrumbs",
        "breadcrumbs-ties": "git_theta.merges.breadcrumbs:BreadcrumbsTies",
        "model-stock": "git_theta.merges.model_stock:ModelStock",
        "uniform-soup": "git_theta.merges.average:UniformSoup",
    },
}


class PluginError(GitThetaError):
    """A plugin name is unknown, or the plugin cannot be loaded."""


@cache
def entry_points(group: str) -> dict[str, EntryPoint]:
    """Return the entry points registered in ``group``, by name."""
    from importlib.metadata import entry_points as find

    return {ep.name: ep for ep in find(group=group)}


def names(group: str) -> list[str]:
    """Return the names of all plugins registered in ``group``."""
    return sorted(set(entry_points(group)) | set(BUILTIN.get(group, {})))


@cache
def load(group: str, name: str) -> Any:
    """Load the plugin ``name`` from ``group``, saying what exists or what to install when it fails."""
    kind = group.rsplit(".", 1)[-1]
    target = BUILTIN.get(group, {}).get(name)
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
