"""The metadata file of Git-Theta 0.2: a JSON tree whose leaves describe one parameter each.

A leaf (found under the parameter's keys; nested for nested checkpoints) is::

    {"tensor_metadata": {"shape": "(8, 6)", "dtype": "float32", "hash": [<locality-sensitive hash>]},
     "lfs_metadata": {"version": "https://git-lfs.github.com/spec/v1", "oid": "<sha256>", "size": "273"},
     "theta_metadata": {"update_type": "dense", "last_commit": "<commit id or null>"}}

The object ``oid`` holds the parameter (``dense``) or an update of the value the same parameter had in the
metadata of the same path at ``last_commit`` (``sparse``, ``low-rank``, ``ia3``). The file records no checkpoint
format: the old tool took it from ``$GIT_THETA_CHECKPOINT_TYPE`` (``pytorch`` unless set).
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from git_theta.legacy.errors import LegacyError

#: numpy dtype names, as the old tool wrote them -> our dtype names.
DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8",
    "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8",
    "bool": "BOOL", "complex64": "C64", "complex128": "C128",
}  # fmt: skip
UPDATE_TYPES = ("dense", "sparse", "low-rank", "ia3")
LEAF = "lfs_metadata"
_SHAPE = re.compile(r"^\((\s*\d+\s*(,\s*\d+\s*)*,?\s*)?\)$")
_HEX = re.compile(r"^[0-9a-f]+$")


class LegacyEntry(NamedTuple):
    """One parameter: what it is, the object holding it (or its update), and the commit it is an update of."""

    keys: tuple[str, ...]
    dtype: str
    shape: tuple[int, ...]
    oid: str
    size: int
    update_type: str
    last_commit: str | None

    @property
    def name(self) -> str:
        """The tensor's name in our checkpoints: its keys joined with '/'."""
        return "/".join(self.keys)


def parse(data: bytes, label: str) -> dict[tuple[str, ...], LegacyEntry]:
    """Return the parameters of a legacy metadata file, in file order; raise LegacyError naming ``label``."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LegacyError(f"{label}: not a Git-Theta 0.2 metadata file ({exc})") from exc
    if not isinstance(doc, dict):
        raise LegacyError(f"{label}: not a Git-Theta 0.2 metadata file (not a JSON object)")
    entries: dict[tuple[str, ...], LegacyEntry] = {}
    _collect(doc, (), entries, label)
    return entries


def _collect(node: dict[str, Any], keys: tuple[str, ...], entries: dict, label: str) -> None:
    for key, value in node.items():
        if not isinstance(value, dict):
            raise LegacyError(f"{label}: Git-Theta 0.2 metadata has a malformed entry at {'/'.join((*keys, key))!r}")
        if LEAF in value:
            entries[(*keys, key)] = _entry((*keys, key), value, label)
        else:
            _collect(value, (*keys, key), entries, label)


def _entry(keys: tuple[str, ...], leaf: dict[str, Any], label: str) -> LegacyEntry:
    name = "/".join(keys)
    try:
        tensor, lfs, theta = leaf["tensor_metadata"], leaf["lfs_metadata"], leaf["theta_metadata"]
        shape_text, dtype_name = str(tensor["shape"]), str(tensor["dtype"])
        oid, size = str(lfs["oid"]), int(lfs["size"])
        update_type, last_commit = str(theta["update_type"]), theta["last_commit"]
    except (KeyError, TypeError, ValueError) as exc:
        raise LegacyError(f"{label}: parameter {name!r} has a malformed Git-Theta 0.2 entry ({exc})") from exc
    if not _SHAPE.match(shape_text):
        raise LegacyError(f"{label}: parameter {name!r} has a malformed shape {shape_text!r}")
    if dtype_name not in DTYPES:
        raise LegacyError(f"{label}: parameter {name!r} has dtype {dtype_name!r}, which git-theta cannot rebuild")
    if len(oid) != 64 or not _HEX.match(oid) or size < 0:
        raise LegacyError(f"{label}: parameter {name!r} has a malformed object id")
    if update_type not in UPDATE_TYPES:
        known = ", ".join(UPDATE_TYPES)
        raise LegacyError(f"{label}: parameter {name!r} uses update type {update_type!r} (known: {known})")
    if last_commit is not None and (not isinstance(last_commit, str) or not _HEX.match(last_commit)):
        raise LegacyError(f"{label}: parameter {name!r} names a malformed previous commit")
    shape = tuple(int(dim) for dim in shape_text.strip("()").split(",") if dim.strip())
    return LegacyEntry(keys, DTYPES[dtype_name], shape, oid, size, update_type, last_commit)
