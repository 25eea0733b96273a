"""The LFS objects of Git-Theta 0.2: a msgpack map from part name to a zarr v2 array written by tensorstore.

Each part (``parameter`` for a dense value; ``R`` and ``C``, ``data``/``indices``/``indptr``/``shape`` or ``ia3``
for updates) is itself a map of the array's zarr keys to their bytes: ``.zarray`` (JSON: shape, dtype, chunks,
blosc compressor) and one entry per chunk (``0.0``, ...). We hand those keys to tensorstore on an in-memory
key-value store and read the array back: exactly the values the old tool wrote.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from git_theta.legacy.errors import LegacyError

#: zarr dtypes the old tool could write (numpy's ``dtype.str``); byte order is normalised to little-endian.
ZARR_DTYPES = {
    f"{order}{kind}{size}"
    for order in "<>|"
    for kind, sizes in {"f": (2, 4, 8), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "c": (8, 16), "b": (1,)}.items()
    for size in sizes
} | {"bfloat16"}


def _modules() -> tuple[Any, Any]:
    try:
        import msgpack
        import tensorstore
    except ImportError as exc:
        raise LegacyError(
            "reading objects written by Git-Theta 0.2 needs tensorstore and msgpack; install them: "
            "pip install 'git-theta[legacy]'"
        ) from exc
    return msgpack, tensorstore


def decode_object(data: bytes, oid: str, max_elements: int, label: str) -> dict[str, np.ndarray]:
    """Return the arrays a legacy object holds, by part name; each at most ``max_elements`` elements."""
    if hashlib.sha256(data).hexdigest() != oid:
        raise LegacyError(
            f"{label}: object {oid[:12]} is corrupt (its content does not match its id); "
            "fetch it again (delete it and check out again) or check the repository with git lfs fsck"
        )
    msgpack, tensorstore = _modules()
    try:
        parts = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several types for malformed input
        raise LegacyError(f"{label}: object {oid[:12]} is not a Git-Theta 0.2 object ({exc})") from exc
    if not isinstance(parts, dict) or not parts:
        raise LegacyError(f"{label}: object {oid[:12]} is not a Git-Theta 0.2 object (no arrays in it)")
    return {
        str(name): _read_array(files, max_elements, tensorstore, f"{label}: object {oid[:12]}")
        for name, files in parts.items()
    }


def _read_array(files: Any, max_elements: int, tensorstore: Any, label: str) -> np.ndarray:
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, bytes) for k, v in files.items()):
        raise LegacyError(f"{label} is not a Git-Theta 0.2 object (a part is not a zarr array)")
    _check_zarray(files.get(".zarray"), max_elements, label)
    context = tensorstore.Context()
    try:
        kvstore = tensorstore.KvStore.open("memory://", context=context).result()
        for key, value in files.items():
            kvstore[key] = value
        spec = {"driver": "zarr", "kvstore": "memory://", "open": True}
        array = tensorstore.open(spec, context=context, read=True).result().read().result()
    except Exception as exc:  # tensorstore reports every decoding failure as one of several types
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise LegacyError(f"{label} is corrupt (tensorstore cannot read it: {first})") from exc
    array = np.asarray(array)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def _check_zarray(raw: bytes | None, max_elements: int, label: str) -> None:
    """Refuse array headers that are not what the old tool writes, or larger than the parameter they belong to."""
    try:
        header = json.loads(raw.decode("utf-8")) if raw is not None else {}
        shape = [int(dim) for dim in header["shape"]]
        dtype = header["dtype"]
    except (AttributeError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise LegacyError(f"{label} is corrupt (a part has no valid .zarray header)") from None
    if header.get("zarr_format") != 2 or not isinstance(dtype, str) or dtype not in ZARR_DTYPES:
        raise LegacyError(f"{label} holds an array of a kind Git-Theta 0.2 does not write ({dtype!r})")
    if any(dim < 0 for dim in shape) or int(np.prod(shape, dtype=object)) > max_elements:
        raise LegacyError(f"{label} is corrupt (an array is larger than the parameter it belongs to)")
