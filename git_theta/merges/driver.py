"""git's merge driver (``merge.theta.driver = git-theta merge-driver %O %A %B %P``): metadata in, metadata out.

git hands us the cleaned blobs, i.e. metadata, of the common ancestor (%O, empty when there is none), ours (%A) and
theirs (%B); the merged metadata goes over %A and exit status 0 means resolved. git calls the driver the same way for
merge, cherry-pick (%O is the picked commit's parent), revert and rebase; for the last three, task-vector
strategies transfer the picked change onto ours (merges/task_vectors.py). On a conflict %A keeps our metadata, so
the working file is our checkpoint, whole and usable. The merged metadata records how it was made
(merges/provenance.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from git_theta.merges.base import MergeError
from git_theta.merges.choose import Chooser
from git_theta.merges.engine import Outcome, merge_metadata
from git_theta.merges.provenance import record
from git_theta.merges.tensors import StoreTensors
from git_theta.metadata import CheckpointMetadata, MetadataError, is_metadata

MANUAL_ENV = "GIT_THETA_MANUAL_MERGE"
RESOLVED, CONFLICT = 0, 1


def merge_driver(base_file: str, ours_file: str, theirs_file: str, path: str) -> int:
    """Merge one checkpoint as git asks; return 0 when resolved, 1 when it stays a conflict."""
    from git_theta.session.context import Session

    ours_data, theirs_data = Path(ours_file).read_bytes(), Path(theirs_file).read_bytes()
    base_data = Path(base_file).read_bytes()
    if not (is_metadata(ours_data) and is_metadata(theirs_data)) or (base_data and not is_metadata(base_data)):
        _say(f"{path}: a side is not git-theta metadata (committed before it was tracked?); resolve it by hand")
        return CONFLICT
    ours, theirs = _load(ours_data, path), _load(theirs_data, path)
    base = _load(base_data, path) if base_data else None
    context = Session.for_repository()
    context.start_file(path, [ours])  # merged tensors are stored as updates of ours where that is cheaper
    try:
        if os.environ.get(MANUAL_ENV, "") not in ("", "0"):
            from git_theta.merges.manual import write_versions

            written = write_versions(path, {"base": base_data, "ours": ours_data, "theirs": theirs_data}, context)
            _say(
                f"{path}: {MANUAL_ENV} is set: wrote {', '.join(written)}; merge them into {path} by hand, "
                f"then git add {path}"
            )
            return CONFLICT
        facts = _facts(base_file if base_data else None, ours_file, theirs_file, path)
        chooser = Chooser.configured()
        io = StoreTensors(context, path)
        outcome = merge_metadata(path, base, [ours, theirs], chooser, io, transfer=facts.get("transfer", False))
    finally:
        context.close()
    if outcome.metadata is None:
        _say(conflict_message(path, outcome))
        return CONFLICT
    outcome.metadata.merge = record(chooser, outcome.merged, facts)
    Path(ours_file).write_bytes(outcome.metadata.dumps())
    if outcome.merged:
        _say(f"{path}: merged {summary(outcome)}")
    return RESOLVED


#: What to do about a conflict the merge driver leaves.
DRIVER_HINT = (
    "the file keeps our version. Resolve in place with: git theta merge --strategy NAME (average, task-arithmetic, "
    "ties, ours, ...; see docs/merges.md), or set GIT_THETA_MERGE_STRATEGY or theta.mergeStrategy and merge again"
)


def conflict_message(path: str, outcome: Outcome, hint: str = DRIVER_HINT) -> str:
    """One message: which tensors conflict, why, and how to resolve them."""
    name, reason = outcome.unresolved[0]
    more = f" and {len(outcome.unresolved) - 1} more" if len(outcome.unresolved) > 1 else ""
    return f"{path}: tensor {name!r}{more} changed on both sides ({reason}); {hint}"


def summary(outcome: Outcome) -> str:
    """How many tensors each strategy merged."""
    return ", ".join(f"{count} tensor(s) with {spec}" for spec, count in sorted(outcome.merged.items()))


def _facts(base_file: str | None, ours_file: str, theirs_file: str, path: str) -> dict[str, Any]:
    """What the merge record says of the operation: its kind, the commits, the metadata merged (blob ids)."""
    from git_theta.git.operation import blob_ids, driver_operation

    blobs = blob_ids([file for file in (base_file, ours_file, theirs_file) if file])
    inputs: list[str | None] = [None, *blobs] if base_file is None else list(blobs)
    operation = driver_operation(path, inputs[0], blobs[-1])  # theirs
    commits = [operation.ours, operation.theirs] if operation.ours and operation.theirs else None
    return {"by": operation.kind, "from": commits, "inputs": inputs, "transfer": True if operation.is_pick else None}


def _load(data: bytes, path: str) -> CheckpointMetadata:
    try:
        return CheckpointMetadata.loads(data)
    except MetadataError as exc:
        raise MergeError(f"{path}: {exc}") from exc


def _say(message: str) -> None:
    print(f"git-theta: {message}", file=sys.stderr)
