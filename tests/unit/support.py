"""Shared pieces of the unit tests: in-process clean/smudge, hypothesis strategies (torch ones: torch_support.py)."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from git_theta.filters.clean import clean
from git_theta.filters.smudge import smudge
from git_theta.metadata import CheckpointMetadata
from git_theta.session.context import Session
from git_theta.storage.objects import MemoryObjectStore

#: Few examples, no deadline: the suite must stay fast on two cores, and torch's first calls are slow.
#: Hunt for bugs with more: THETA_MAX_EXAMPLES=1000 python -m pytest tests/unit
PROPERTY = settings(
    max_examples=int(os.environ.get("THETA_MAX_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: What numpy can hold in an .npz without extension types (no bfloat16 or fp8).
NUMPY_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "C64": np.dtype("<c8"),
    "C128": np.dtype("<c16"),
}
FLOAT_DTYPES = ["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"]


@contextmanager
def filter_context(store: MemoryObjectStore | None = None) -> Iterator[Session]:
    """A Session over an in-memory store, its thread pool shut down afterwards."""
    context = Session(store if store is not None else MemoryObjectStore())
    try:
        yield context
    finally:
        context.close()


class StagedSession(Session):
    """A Session whose index holds the metadata in ``staged``, as after ``git add``: what the next clean may reuse."""

    def __init__(self, store: MemoryObjectStore) -> None:
        super().__init__(store)
        self.staged: dict[str, CheckpointMetadata] = {}

    def staged_metadata(self, path: str) -> CheckpointMetadata | None:
        """The metadata staged for ``path`` (see ``stage``)."""
        return self.staged.get(path)

    def stage(self, path: str, metadata: bytes) -> None:
        """Stage ``metadata`` for ``path``."""
        self.staged[path] = CheckpointMetadata.loads(metadata)


@contextmanager
def staged_context() -> Iterator[StagedSession]:
    """A StagedSession over an in-memory store, its thread pool shut down afterwards."""
    context = StagedSession(MemoryObjectStore())
    try:
        yield context
    finally:
        context.close()


def clean_bytes(data: bytes, path: str, context: Session) -> bytes:
    """Run the clean filter on ``data`` in-process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about odd pickle protocols in garbage input
        return clean(io.BytesIO(data), path, context)


def smudge_bytes(metadata: bytes, path: str, context: Session) -> bytes:
    """Run the smudge filter on ``metadata`` in-process and return the rebuilt file."""
    out = io.BytesIO()
    smudge(metadata, path, context)(out)
    return out.getvalue()


def round_trip(data: bytes, path: str, context: Session) -> tuple[CheckpointMetadata, bytes]:
    """Clean then smudge; return the parsed metadata and the rebuilt file."""
    metadata = clean_bytes(data, path, context)
    return CheckpointMetadata.loads(metadata), smudge_bytes(metadata, path, context)


def assert_one_line_error(excinfo: pytest.ExceptionInfo, label: str) -> None:
    """The error must be a single line that names the file."""
    message = str(excinfo.value)
    assert "\n" not in message, f"multi-line error message: {message!r}"
    assert label in message, f"error message does not name {label!r}: {message!r}"


# --- hypothesis strategies -----------------------------------------------------------------------------------------

#: Scalars, zero-size dimensions, 1-D up to a few hundred elements (so that some tensors are compressed), 2-D and 3-D.
shapes = st.one_of(
    st.just(()),
    st.tuples(st.integers(0, 300)),
    st.lists(st.integers(0, 5), min_size=2, max_size=3).map(tuple),
)


@st.composite
def raw_data(draw: st.DrawFn, size: int, dtype: str) -> bytes:
    """``size`` bytes: arbitrary, random, or low-entropy (compressible); bools are 0 or 1."""
    kind = draw(st.sampled_from(["hypothesis", "random", "smooth"]))
    if kind == "hypothesis":
        data = draw(st.binary(min_size=size, max_size=size))
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        high = 256 if kind == "random" else 3
        data = rng.integers(0, high, size, dtype=np.uint8).tobytes()
    if dtype == "BOOL":
        data = bytes(b & 1 for b in data)
    return data


@st.composite
def numpy_arrays(draw: st.DrawFn) -> np.ndarray:
    """A numpy array of a dtype .npz can hold, any shape, any bit pattern."""
    dtype = draw(st.sampled_from(sorted(NUMPY_DTYPES)))
    shape = draw(shapes)
    count = int(np.prod(shape, dtype=np.int64))
    data = draw(raw_data(count * NUMPY_DTYPES[dtype].itemsize, dtype))
    return np.frombuffer(data, dtype=NUMPY_DTYPES[dtype]).reshape(shape).copy()


names = st.text(alphabet="abcxyz._0123456789", min_size=1, max_size=8)


class Evil:
    """Unpickling this creates a marker file: proof that code from the checkpoint ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return open, (str(self.marker), "w")
