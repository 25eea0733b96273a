"""Tensor element types, named as safetensors names them: their widths, and the numpy types that read them.

numpy (and ml_dtypes, for bf16 and fp8) are imported only when a numpy type is asked for: the filter reads and
writes most tensors as bytes, and those imports cost tenths of a second.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from git_theta.errors import GitThetaError

if TYPE_CHECKING:
    import numpy as np

#: Every dtype git-theta stores, with its element size in bytes.
ITEMSIZE: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
    "C64": 8,
    "C128": 16,
}

#: The name numpy and torch give each of those dtypes (``np.dtype(...).name``, ``torch.<name>``) -> git-theta's.
BY_FRAMEWORK_NAME: dict[str, str] = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e8m0fnu": "F8_E8M0",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8",
    "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8",
    "bool": "BOOL", "complex64": "C64", "complex128": "C128",
}  # fmt: skip

#: The numpy type of one real component of each dtype (complex is read as interleaved real, imaginary pairs).
_NUMPY_COMPONENT = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "u1",
    "C64": "<f4", "C128": "<f8",
}  # fmt: skip
#: Types numpy lacks, from ml_dtypes (imported only when such a tensor is met: it costs ~60 ms).
_ML_DTYPES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu"}
_COMPLEX = {"C64": "<c8", "C128": "<c16"}

#: No real tensor comes near this (256 TiB): a larger declared size is a corrupt or hostile file.
MAX_NBYTES = 1 << 48
#: More dimensions than any framework allows (numpy's limit is 64).
MAX_DIMS = 64


class UnknownDtypeError(GitThetaError):
    """A tensor has an element type git-theta does not know."""


def itemsize(dtype: str) -> int:
    """Return the element size of ``dtype`` in bytes."""
    try:
        return ITEMSIZE[dtype]
    except KeyError:
        known = ", ".join(ITEMSIZE)
        raise UnknownDtypeError(f"unsupported tensor dtype {dtype!r} (supported: {known})") from None


def element_count(shape: tuple[int, ...] | list[int]) -> int:
    """Return the number of elements in a tensor of ``shape``."""
    count = 1
    for dim in shape:
        count *= dim
    return count


def nbytes(dtype: str, shape: tuple[int, ...] | list[int]) -> int:
    """Return the size in bytes of a tensor of ``dtype`` and ``shape``."""
    return itemsize(dtype) * element_count(shape)


def shape_error(dtype: str, shape: object) -> str | None:
    """Why ``shape`` (as a file or metadata declares it) cannot be a ``dtype`` tensor's, or None when it can."""
    # bool is an int in Python: [true] would pass for [1] here and then differ from it everywhere else.
    if not isinstance(shape, (list, tuple)):
        return f"has shape {_preview(shape)}, which is not a list of non-negative integers"
    count, largest = 1, 0
    for dim in shape:  # one loop, not three: metadata of thousands of tensors is checked on every git command
        if type(dim) is not int or dim < 0:
            return f"has shape {_preview(shape)}, which is not a list of non-negative integers"
        count *= dim
        if count > MAX_NBYTES:  # too large already: a hostile list of huge dimensions must not grow a huge integer
            count = MAX_NBYTES + 1
        if dim > largest:
            largest = dim
    if len(shape) > MAX_DIMS:
        return f"has {len(shape)} dimensions (at most {MAX_DIMS})"
    if largest > MAX_NBYTES or ITEMSIZE.get(dtype, 1) * count > MAX_NBYTES:
        return f"has shape {_preview(list(shape))}, larger than any real tensor"
    return None


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    """The numpy dtype of a whole element of ``dtype`` (complex included; bf16 and fp8 through ml_dtypes)."""
    if dtype in _COMPLEX:
        import numpy as np

        return np.dtype(_COMPLEX[dtype])
    return component_dtype(dtype)


def component_dtype(dtype: str) -> np.dtype[Any]:
    """The numpy dtype that reads one real component of ``dtype`` (a float for each half of a complex)."""
    import numpy as np

    if dtype in _ML_DTYPES:
        import ml_dtypes

        if not hasattr(ml_dtypes, _ML_DTYPES[dtype]):
            raise UnknownDtypeError(f"reading {dtype} tensors needs a newer ml_dtypes: pip install -U ml_dtypes")
        return np.dtype(getattr(ml_dtypes, _ML_DTYPES[dtype]))
    if dtype not in _NUMPY_COMPONENT:
        itemsize(dtype)  # says which dtypes exist
    return np.dtype(_NUMPY_COMPONENT[dtype])


def bits_dtype(dtype: str) -> np.dtype[Any]:
    """The unsigned integer type as wide as one component of ``dtype`` (half of a complex element): what a delta
    works on, and what reads the bit patterns of bf16 and fp8 tensors without importing ml_dtypes."""
    import numpy as np

    return np.dtype(f"<u{itemsize(dtype) // (2 if dtype in _COMPLEX else 1)}")


def needs_ml_dtypes(dtype: str) -> bool:
    """Whether numpy reads ``dtype`` only through ml_dtypes (bf16, fp8)."""
    return dtype in _ML_DTYPES


def read_as(dtype: str) -> str:
    """The dtype of an array that reads ``dtype`` tensors (``BOOL`` ones read as ``U8``): ``dtype_name`` of
    ``numpy_dtype``, without importing ml_dtypes for the types it holds."""
    return dtype if needs_ml_dtypes(dtype) else dtype_name(numpy_dtype(dtype))


@cache
def dtype_name(numpy_type: np.dtype[Any]) -> str:
    """The safetensors name of a numpy dtype (the inverse of ``numpy_dtype``). numpy's own types are looked up
    first: importing ml_dtypes, for the types numpy lacks, costs 0.7 s on a fresh install."""
    for name in sorted(ITEMSIZE, key=lambda name: name in _ML_DTYPES):
        try:
            if numpy_dtype(name) == numpy_type:
                return name
        except UnknownDtypeError:
            continue
    raise UnknownDtypeError(f"arrays of dtype {numpy_type} cannot be stored")


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
