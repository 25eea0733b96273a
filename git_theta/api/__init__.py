"""The Python API: read any version of a checkpoint without checking it out, and compare versions (docs/api.md).

``git_theta.open_checkpoint(path, rev)`` gives a lazy mapping of tensor names to arrays; ``git_theta.diff(a, b)``
the records ``git theta diff --format json`` prints.
"""

from __future__ import annotations

from git_theta.api.changes import diff
from git_theta.api.checkpoint import CheckpointNotFoundError, StoredCheckpoint, TensorInfo, open_checkpoint

__all__ = ["CheckpointNotFoundError", "StoredCheckpoint", "TensorInfo", "diff", "open_checkpoint"]
