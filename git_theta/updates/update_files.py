"""Update files, as ``git theta add --update-path`` reads them: PEFT adapters and the original Git-Theta's naming.

- A PEFT adapter directory (``adapter_config.json`` and ``adapter_model.safetensors``, or ``.bin``): LoRA gives
  ``low-rank`` updates, DoRA ``dora`` updates, IA3 ``ia3`` updates (see updates/peft.py).
- A checkpoint in any supported format whose tensors are named ``<param>/R`` and ``<param>/C`` (low-rank, scale 1),
  ``<param>/ia3``, ``<param>/indices`` with ``<param>/values`` or ``<param>/data`` (sparse, added), or ``<param>``
  itself (dense: the new value).

updates/plan.py then matches each update to the checkpoint tensor it applies to.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from git_theta.updates.base import Payload, TensorUpdate, UpdateError, Updates, expect_kind, read_arrays
from git_theta.updates.peft import read_adapter

#: Part names of the original tool's update files (``<param>/<part>``).
_PARTS = {"R", "C", "ia3", "indices", "values", "data", "indptr", "shape"}


def read_update_file(path: Path, kind: str) -> Updates:
    """Return the ``kind`` updates that ``path`` holds, by the tensor (or PEFT module weight) each applies to."""
    if path.is_dir():
        config_file = path / "adapter_config.json"
        if not config_file.is_file():
            raise UpdateError(f"{path} is a directory without adapter_config.json; give a PEFT adapter or a file")
        return read_adapter(path, _json(config_file), kind)
    return Updates(_named(read_arrays(path), kind, str(path)), {})


def _named(arrays: dict[str, np.ndarray], kind: str, label: str) -> dict[str, TensorUpdate]:
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, array in arrays.items():
        param, slash, part = key.rpartition("/")
        if slash and part in _PARTS:
            groups.setdefault(param, {})[part] = array
        else:
            groups.setdefault(key, {})["value"] = array
    return {param: TensorUpdate(kind, _named_payload(param, parts, kind, label)) for param, parts in groups.items()}


def _named_payload(param: str, parts: dict[str, np.ndarray], kind: str, label: str) -> Payload:
    found = _kind_of(parts)
    if found is None:
        raise UpdateError(f"{label}: the update of {param!r} has parts {sorted(parts)}, which no update type uses")
    expect_kind(kind, found, f"{label} holds a {found} update for {param!r}")
    if found == "low-rank":
        return Payload({"R": parts["R"], "C": parts["C"]}, {"scale": 1.0})
    if found == "ia3":
        return Payload({"ia3": parts["ia3"]}, {})
    if found == "dense":
        return Payload({"value": parts["value"]}, {})
    values = parts.get("values", parts.get("data"))
    if values is None:
        raise UpdateError(f"{label}: the sparse update of {param!r} has indices but no values (or data)")
    indices = parts["indices"].reshape(-1).astype(np.int64)
    order = np.argsort(indices, kind="stable")
    return Payload({"indices": indices[order], "values": values.reshape(-1)[order]}, {"mode": "add"})


def _kind_of(parts: dict[str, np.ndarray]) -> str | None:
    if {"R", "C"} <= parts.keys():
        return "low-rank"
    for part, kind in (("ia3", "ia3"), ("indices", "sparse"), ("value", "dense")):
        if part in parts:
            return kind
    return None


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UpdateError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UpdateError(f"{path} is not a JSON object")
    return data
