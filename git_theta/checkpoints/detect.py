"""Choosing the checkpoint plugin for a file: an explicit choice, then the extension and the content."""

from __future__ import annotations

from typing import TYPE_CHECKING

from git_theta import plugins
from git_theta.checkpoints.base import Checkpoint, CheckpointError

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The original Git-Theta's checkpoint names (as in an old ``GIT_THETA_CHECKPOINT_TYPE``) -> ours.
ALIASES = {
    "pytorch": "torch",
    "pickled-dict": "torch",
    "pickled_dict": "torch",
    "safetensors-checkpoint": "safetensors",
}


def load(name: str) -> type[Checkpoint]:
    """Return the checkpoint plugin called ``name`` (or by the original Git-Theta's name for it)."""
    return plugins.load(plugins.CHECKPOINTS, ALIASES.get(name, name))


def detect(path: str, head: bytes, explicit: str | None = None) -> type[Checkpoint]:
    """Return the plugin for the file at ``path`` that starts with ``head``.

    An explicit name (``--checkpoint-type``, the ``theta-checkpoint`` attribute, or the type already recorded for the
    path) wins. Otherwise a plugin must recognise the content; among those, one that owns the extension is preferred
    (git-theta's own first).
    """
    if explicit:
        return load(explicit)
    # One of our plugins that owns the extension and recognises the content is taken without looking for other
    # packages' plugins (importlib.metadata's scan of every installed package costs tens of milliseconds).
    for plugin in _loadable(_named_after_extension_first(path, plugins.own_names(plugins.CHECKPOINTS))):
        if plugin.matches_extension(path) and plugin.sniff(head):
            return plugin
    candidates = list(_loadable())
    recognised = [plugin for plugin in candidates if plugin.sniff(head)]
    by_extension = [plugin for plugin in candidates if plugin.matches_extension(path)]
    for plugin in recognised:
        if plugin in by_extension:
            return plugin
    if recognised:
        return recognised[0]
    if by_extension:
        return by_extension[0]  # its reader will say precisely what is wrong with the file
    known = ", ".join(plugins.names(plugins.CHECKPOINTS))
    raise CheckpointError(
        f"{path}: not a checkpoint format git-theta recognises (known: {known}); "
        "name one with 'git theta add --checkpoint-type NAME' or the theta-checkpoint attribute, "
        "or stop tracking this path"
    )


def _named_after_extension_first(path: str, names: list[str]) -> list[str]:
    """``names`` with the one named like ``path``'s extension first (``safetensors`` for ``model.safetensors``):
    trying it first spares importing the other plugins (the npz plugin's zipfile alone costs 4 ms)."""
    extension = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return sorted(names, key=lambda name: name != extension)


def _loadable(names: list[str] | None = None) -> Iterator[type[Checkpoint]]:
    # A broken third-party plugin must not stop the detection of every other format.
    for name in plugins.names(plugins.CHECKPOINTS) if names is None else names:
        try:
            yield load(name)
        except plugins.PluginError:
            continue
