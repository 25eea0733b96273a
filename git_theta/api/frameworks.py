"""A tensor's exact bytes as a framework's array: numpy (with ml_dtypes for bfloat16 and float8) or torch.

Each dtype's framework name comes from ``git_theta.dtypes``; a framework is imported only when asked for.
"""

from __future__ import annotations

from typing import Any

from git_theta.dtypes import BY_FRAMEWORK_NAME
from git_theta.errors import GitThetaError, UsageError

FRAMEWORKS = ("numpy", "torch")
#: git-theta's dtype name -> numpy's and torch's (``float32``, ``bfloat16``, ``complex64``, ...).
FRAMEWORK_NAME = {ours: theirs for theirs, ours in BY_FRAMEWORK_NAME.items()}
#: Types numpy lacks, found in ml_dtypes.
_ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu")


def check_framework(framework: str) -> str:
    """Return ``framework`` if it is one we convert to, else say which are."""
    if framework not in FRAMEWORKS:
        raise UsageError(f"unknown framework {framework!r} (choose one of: {', '.join(FRAMEWORKS)})")
    return framework


def convert(data: memoryview, dtype: str, shape: tuple[int, ...], framework: str) -> Any:
    """The tensor whose exact little-endian bytes are ``data``, as ``framework``'s array (no copy where possible)."""
    return to_torch(data, dtype, shape) if framework == "torch" else to_numpy(data, dtype, shape)


def numpy_dtype(dtype: str) -> Any:
    """The numpy dtype of a whole element of ``dtype`` (a complex number, a bool)."""
    import numpy as np

    name = FRAMEWORK_NAME[dtype]
    if name not in _ML_DTYPES:
        return np.dtype(name).newbyteorder("<")
    import ml_dtypes

    if not hasattr(ml_dtypes, name):
        raise GitThetaError(f"reading {dtype} tensors needs a newer ml_dtypes: pip install -U ml_dtypes")
    return np.dtype(getattr(ml_dtypes, name))


def to_numpy(data: memoryview, dtype: str, shape: tuple[int, ...]) -> Any:
    """A numpy array over ``data`` (read-only when ``data`` is)."""
    import numpy as np

    return np.frombuffer(data, dtype=numpy_dtype(dtype)).reshape(shape)


def to_torch(data: memoryview, dtype: str, shape: tuple[int, ...]) -> Any:
    """A torch tensor over ``data`` (copied first when ``data`` is read-only: torch tensors are writable)."""
    try:
        import torch
    except ImportError:
        raise GitThetaError("framework='torch' needs PyTorch: pip install 'git-theta[torch]'") from None
    kind = getattr(torch, FRAMEWORK_NAME[dtype], None)
    if not isinstance(kind, torch.dtype):
        raise GitThetaError(f"this PyTorch ({torch.__version__}) has no {FRAMEWORK_NAME[dtype]}; upgrade it")
    if not data.nbytes:
        return torch.empty(shape, dtype=kind)
    buffer = bytearray(data) if data.readonly else data
    return torch.frombuffer(buffer, dtype=kind).reshape(shape)
