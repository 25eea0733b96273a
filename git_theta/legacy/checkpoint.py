"""Rebuilding a Git-Theta 0.2 checkpoint through our checkpoint plugins.

The old metadata does not say the file's format: the old tool took it from ``$GIT_THETA_CHECKPOINT_TYPE``
(``pytorch`` unless set). We take, in order: the ``theta-checkpoint`` attribute or that variable (old names are
mapped to ours), the file's extension, then ``pytorch`` as the old tool did. We write what the old tool wrote:
a state dict saved by torch (keys in metadata order), or a safetensors file laid out as the safetensors library
lays it out (so that it is the same file, byte for byte).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import numpy as np

from git_theta import plugins
from git_theta.checkpoints.base import TensorSpec
from git_theta.checkpoints.detect import ALIASES
from git_theta.dtypes import itemsize
from git_theta.legacy.errors import LegacyError
from git_theta.legacy.metadata import DTYPES

#: The old tool's checkpoint plugin names -> ours.
LEGACY_TYPES = {**ALIASES, "safetensors": "safetensors"}
SUPPORTED = ("torch", "safetensors", "npz")
DEFAULT = "torch"
#: safetensors writes tensors by descending dtype (the order of its Dtype enum), then by name.
_SAFETENSORS_ORDER = [
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16",
    "I32", "U32", "F32", "C64", "F64", "I64", "U64", "C128",
]  # fmt: skip


class Rebuilt(NamedTuple):
    """What our checkpoint plugin needs to write the file: its name, format data, specs and tensor bytes in order."""

    checkpoint_type: str
    format: dict[str, Any]
    specs: list[TensorSpec]
    tensors: list[memoryview]


def checkpoint_type(path: str, explicit: str | None) -> str:
    """Our plugin for a legacy checkpoint at ``path``; ``explicit`` is the attribute or environment's choice."""
    if explicit:
        name = LEGACY_TYPES.get(explicit, explicit)
        if name not in SUPPORTED:
            raise LegacyError(
                f"{path}: Git-Theta 0.2 checkpoints of type {explicit!r} cannot be rebuilt by this git-theta "
                f"(it rebuilds: {', '.join(sorted(LEGACY_TYPES))})"
            )
        return name
    for name in SUPPORTED:
        if plugins.load(plugins.CHECKPOINTS, name).matches_extension(path):
            return name
    return DEFAULT


def rebuild(name: str, values: dict[tuple[str, ...], np.ndarray], path: str) -> Rebuilt:
    """Lay out the parameters ``values`` (in metadata order) as a checkpoint of our plugin ``name``."""
    specs = [TensorSpec("/".join(keys), _dtype(value, path), tuple(value.shape)) for keys, value in values.items()]
    data = {
        spec.name: np.ascontiguousarray(value).data.cast("B")
        for spec, value in zip(specs, values.values(), strict=True)
    }
    if name == "torch":
        return Rebuilt(name, {"structure": _structure(list(values))}, specs, [data[spec.name] for spec in specs])
    if name == "npz":
        return Rebuilt(name, {"compressed": False}, specs, [data[spec.name] for spec in specs])
    if any(len(keys) > 1 for keys in values):
        raise LegacyError(f"{path}: a safetensors checkpoint cannot hold nested parameters")
    ordered = sorted(specs, key=lambda spec: (-_SAFETENSORS_ORDER.index(spec.dtype), spec.name))
    return Rebuilt(name, {"header": _header(ordered)}, ordered, [data[spec.name] for spec in ordered])


def _dtype(value: np.ndarray, path: str) -> str:
    dtype = DTYPES.get(str(value.dtype))
    if dtype is None:
        raise LegacyError(f"{path}: a parameter rebuilt as {value.dtype}, which git-theta cannot store")
    return dtype


def _structure(keys: list[tuple[str, ...]]) -> dict[str, Any]:
    """Our torch plugin's structure for nested dicts of tensors named by their keys joined with '/'."""
    tree: dict[str, Any] = {}
    for key in keys:
        node = tree
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = "/".join(key)

    def describe(node: dict[str, Any]) -> dict[str, Any]:
        items = [[k, {"tensor": v} if isinstance(v, str) else describe(v)] for k, v in node.items()]
        return {"dict": items}

    return describe(tree)


def _header(specs: list[TensorSpec]) -> str:
    """The header the safetensors library writes: compact JSON in data order, padded with spaces to 8 bytes."""
    entries, offset = {}, 0
    for spec in specs:
        size = int(np.prod(spec.shape, dtype=np.int64)) * itemsize(spec.dtype)
        entries[spec.name] = {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False)
    length = len(text.encode("utf-8"))
    return text + " " * ((8 - length % 8) % 8)
