"""git-theta: version machine-learning checkpoints in Git, one exact tensor object at a time.

The Python API (``open_checkpoint``, ``diff``; docs/api.md) is imported on first use: git starts the filter, which
imports this package, for every command that touches a checkpoint, and that must stay cheap.
"""

from __future__ import annotations

__version__ = "0.3.0.dev0"
__all__ = ["CheckpointNotFoundError", "StoredCheckpoint", "TensorInfo", "__version__", "diff", "open_checkpoint"]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> object:
    """The API's names, from ``git_theta.api`` when first asked for."""
    if name in _API:
        from git_theta import api

        return getattr(api, name)
    raise AttributeError(f"module 'git_theta' has no attribute {name!r}")
