"""A parameter's value from its Git-Theta 0.2 object: the same numpy arithmetic the old tool's checkout did.

- ``dense``: the object holds the value (part ``parameter``).
- ``low-rank``: previous + R @ C; for a parameter of fewer than two dimensions, previous + ``parameter``.
- ``sparse``: previous + the difference stored as one CSR row (``data``, ``indices``, ``indptr``) of ``shape``.
- ``ia3``: previous * ``ia3``, broadcast.

Results keep numpy's types: an ia3 vector of float64 turns a float32 parameter into float64, as it did there.
"""

from __future__ import annotations

import numpy as np

from git_theta.legacy.errors import LegacyError

Parts = dict[str, np.ndarray]


def apply(update_type: str, parts: Parts, previous: np.ndarray | None, label: str) -> np.ndarray:
    """Return the value a parameter's object gives, from its parts and (for updates) its previous value."""
    try:
        if update_type == "dense":
            return parts["parameter"]
        if previous is None:
            raise LegacyError(f"{label}: its {update_type} update has no previous value to apply to")
        if update_type == "low-rank":
            if "R" in parts:
                return parts["R"] @ parts["C"] + previous
            return parts["parameter"] + previous
        if update_type == "sparse":
            return _sparse(parts) + previous
        if update_type == "ia3":
            return previous * parts["ia3"]
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise LegacyError(f"{label}: its {update_type} update cannot be applied ({type(exc).__name__}: {exc})") from exc
    raise LegacyError(f"{label}: update type {update_type!r} is not one Git-Theta 0.2 wrote")


def _sparse(parts: Parts) -> np.ndarray:
    """The stored difference as a dense array (duplicate indices add up, as in a CSR matrix)."""
    shape = tuple(int(dim) for dim in parts["shape"].reshape(-1))
    data, indices, indptr = parts["data"], parts["indices"], parts["indptr"]
    start, stop = int(indptr[0]), int(indptr[-1])
    if indices[start:stop].size and int(indices[start:stop].min()) < 0:
        raise IndexError("negative index")
    row = np.zeros(int(np.prod(shape, dtype=np.int64)), dtype=data.dtype)
    np.add.at(row, indices[start:stop], data[start:stop])
    return row.reshape(shape)
