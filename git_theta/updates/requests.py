"""How ``git theta add --update-path`` hands each checkpoint's updates to the clean filter that ``git add`` starts.

``git theta add`` reads the update file once, matches its updates to the tensors of every checkpoint added (see
updates/plan.py), and writes a request directory: ``request.json`` (the update type, and checkpoint path -> file
number) and, per checkpoint with updates, ``N.json`` (tensor -> update type, parameters, and where each part's bytes
are) beside ``N.bin`` (those bytes). The filter, given the directory in ``GIT_THETA_UPDATE_REQUEST``, reads only its
own file's updates: the adapter of a sharded model is read once, not once per shard.
"""

from __future__ import annotations

import json
from pathlib import Path

from git_theta.dtypes import dtype_name, nbytes
from git_theta.updates.base import Payload, TensorUpdate, UpdateError, as_array, raw_bytes
from git_theta.updates.plan import Plan, checkpoint_specs, plan_updates
from git_theta.updates.update_files import read_update_file

#: The request directory, set by ``git theta add --update-path`` for the filter that ``git add`` starts.
UPDATE_REQUEST_ENV = "GIT_THETA_UPDATE_REQUEST"
_INDEX = "request.json"
#: The part that holds the value an update applies to, when the update file sets it (not a part of the payload).
_BASE = "base value"


def prepare_request(
    update_path: Path, kind: str, checkpoints: dict[str, Path], types: dict[str, str | None], directory: Path
) -> Plan:
    """Read ``update_path`` once, match its updates to the tensors of ``checkpoints`` (repository path -> file, read
    as ``types`` says or as detected), and write the request into ``directory``; return the plan."""
    updates = read_update_file(update_path, kind)
    specs = {path: checkpoint_specs(file, types.get(path)) for path, file in checkpoints.items()}
    plan = plan_updates(updates, specs, str(update_path))
    write_request(directory, plan)
    return plan


def write_request(directory: Path, plan: Plan) -> None:
    """Write the updates of every checkpoint of ``plan`` (path -> tensor -> update) into ``directory``."""
    files = {}
    for number, (path, updates) in enumerate(sorted(plan.items())):
        if updates:
            _write_file(directory / str(number), updates)
            files[path] = str(number)
    (directory / _INDEX).write_text(json.dumps({"files": files}), encoding="utf-8")


class FileUpdates:
    """The updates of one checkpoint, taken by tensor name as its tensors arrive."""

    def __init__(self, path: str, updates: dict[str, TensorUpdate]) -> None:
        self.path = path
        self._updates = updates

    @classmethod
    def load(cls, directory: Path, path: str) -> FileUpdates:
        """The updates the request in ``directory`` holds for checkpoint ``path`` (none if it names no such file)."""
        try:
            files = json.loads((directory / _INDEX).read_text(encoding="utf-8"))["files"]
            number = files.get(path)
            return cls(path, _read_file(directory / number) if number is not None else {})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UpdateError(f"{path}: the update request in {directory} cannot be read ({exc})") from exc

    def take(self, name: str) -> TensorUpdate | None:
        """Return (once) the update of tensor ``name``, if it has one."""
        return self._updates.pop(name, None)

    def check_all_used(self, checkpoint: str) -> None:
        """Fail when some updates found no tensor: the file changed since ``git theta add`` read it."""
        if self._updates:
            missing = ", ".join(sorted(self._updates)[:3])
            raise UpdateError(
                f"{checkpoint}: {len(self._updates)} tensor(s) to update are not in the file any more ({missing}); "
                "it changed during git theta add: run it again"
            )

    def __len__(self) -> int:
        return len(self._updates)


def _write_file(stem: Path, updates: dict[str, TensorUpdate]) -> None:
    entries, offset = {}, 0
    with open(stem.with_suffix(".bin"), "wb") as out:
        for name, update in updates.items():
            arrays = {**update.payload.parts, **({_BASE: update.base} if update.base is not None else {})}
            parts = {}
            for part, array in arrays.items():
                data = raw_bytes(array)
                parts[part] = {"dtype": dtype_name(array.dtype), "shape": list(array.shape), "offset": offset}
                out.write(data)
                offset += len(data)
            entries[name] = {"kind": update.kind, "params": update.payload.params, "parts": parts}
    stem.with_suffix(".json").write_text(json.dumps(entries), encoding="utf-8")


def _read_file(stem: Path) -> dict[str, TensorUpdate]:
    entries = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    data = memoryview(stem.with_suffix(".bin").read_bytes())
    updates = {}
    for name, entry in entries.items():
        parts = {}
        for part, where in entry["parts"].items():
            dtype, shape, start = where["dtype"], tuple(where["shape"]), where["offset"]
            parts[part] = as_array(data[start : start + nbytes(dtype, shape)], dtype, shape)
        updates[name] = TensorUpdate(entry["kind"], Payload(parts, entry["params"]), parts.pop(_BASE, None))
    return updates
