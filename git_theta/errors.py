"""The one exception tree of git-theta: every error a user sees is a GitThetaError, raised next to its cause.

    GitThetaError                  anything git-theta reports to the user (exit code 1)
    ├── UsageError                 a command was called wrongly (exit code 2)
    │   ├── NotARepositoryError    (git/runner.py) run outside a git repository
    │   ├── PatternError           (git/tracking.py) a tracking pattern git cannot store
    │   └── CheckpointNotFoundError  (api/checkpoint.py) no checkpoint git-theta stores at that path and revision
    ├── MetadataError              (metadata.py) a metadata file cannot be read
    ├── UnknownDtypeError          (dtypes.py) a tensor element type git-theta does not know
    ├── PluginError                (plugins.py) an unknown or broken plugin
    ├── CheckpointError            (checkpoints/base.py) a checkpoint is corrupt, truncated or unsupported
    │   └── Truncated              (checkpoints/base.py) the file ends before what it declares
    ├── ShardIndexError            (checkpoints/sharded.py) a sharded checkpoint's index json cannot be read
    ├── UpdateError                (updates/base.py) an update does not fit its base or cannot be applied
    ├── ObjectError                (storage/errors.py) a tensor object is missing, corrupt or not what is expected
    ├── BatchError                 (storage/lfs_batch.py) the LFS server refused or failed a batch request
    ├── TransferError              (storage/lfs_transfer.py) git-lfs could not download or upload objects
    ├── GitError                   (git/runner.py) a git or git-lfs command failed
    ├── ProtocolError              (git/pktline.py) git spoke the filter protocol wrongly
    ├── LockedError                (git/index_lock.py) another git command holds the index
    ├── LegacyError                (legacy/errors.py) a Git-Theta 0.2 file or object cannot be read
    ├── MergeError                 (merges/base.py) a merge cannot be made as asked
    └── FsckError                  (cli/fsck.py) git theta fsck found problems

Library code raises; only ``cli.main`` turns these into one line on stderr and an exit code.
"""

from __future__ import annotations


class GitThetaError(Exception):
    """An error with a message meant for the user: what happened and what to do."""

    exit_code = 1


class UsageError(GitThetaError):
    """A command was invoked with arguments that cannot work."""

    exit_code = 2


def debug_enabled() -> bool:
    """Tell whether tracebacks were asked for (``GIT_THETA_DEBUG=1``)."""
    import os

    return os.environ.get("GIT_THETA_DEBUG", "") not in ("", "0")


def report(exc: BaseException) -> int:
    """Print one line about ``exc`` on stderr (a traceback only when debugging) and return the exit code."""
    import sys
    import traceback

    if debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, GitThetaError):
        print(f"git-theta: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, MemoryError):
        print("git-theta: error: out of memory", file=sys.stderr)
        return 1
    if isinstance(exc, OSError):
        print(f"git-theta: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    print(
        f"git-theta: internal error: {type(exc).__name__}: {exc} (set GIT_THETA_DEBUG=1 for a traceback "
        "and please report it)",
        file=sys.stderr,
    )
    return 3
