"""Mutation fuzzing of every format reader and of metadata: bad input gives one clear line, never a crash.

Each case takes a real file written by the format's own producer, mutates it (flips and sets bytes anywhere,
truncates, extends, cuts, writes huge numbers into binary fields, swaps numbers in text for bools, floats, huge or
nested values), and cleans it in-process. Either the file is read, and then its metadata loads back unchanged and
smudging rebuilds the file exactly (or, for torch and npz, the same tensors as their own loaders give); or it is
refused with a GitThetaError of one line naming the file. Nothing else may escape, and the memory traced while
reading stays in proportion to the input, whatever sizes it claims.

The default run takes a few seconds per format. A long run is one flag away:

    GIT_THETA_FUZZ=long python -m pytest -n 0 tests/fuzz          # 20,000 cases per test
    GIT_THETA_FUZZ_EXAMPLES=2000 python -m pytest -n 0 tests/fuzz # any other number
"""

from __future__ import annotations

import io
import re
import tempfile
import tracemalloc
import warnings
from functools import cache
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from git_theta.errors import GitThetaError
from git_theta.filters.process import about
from git_theta.metadata import CheckpointMetadata, MetadataError
from tests.fuzz.conftest import PROFILE
from tests.helpers import finish_gguf
from tests.needs import TORCH, needs_module
from tests.unit.support import clean_bytes, filter_context, smudge_bytes

FUZZ = settings.get_profile(PROFILE)

#: Memory a read may take beyond a few times its input: the first step of a bounded read, a spool buffer, and so on.
MEMORY_SLACK = 8 << 20
#: Deflate expands at most about 1032 times: a compressed archive may really hold that much.
DEFLATE_RATIO = 1032

# --- the files, written by each format's own producer ---------------------------------------------------------------


def _arrays() -> dict[str, np.ndarray]:
    return {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.ones(4, dtype=np.int16),
        "c": np.zeros((0, 2), dtype=np.uint8),
        "d": np.array(3.5, dtype=np.float64),
    }


def safetensors_file() -> bytes:
    from safetensors.numpy import save

    return save(_arrays(), metadata={"format": "np"})


def torch_file() -> bytes:
    torch = needs_module("torch", TORCH)
    buffer = io.BytesIO()
    state = {name: torch.from_numpy(array) for name, array in _arrays().items()}
    torch.save({"model": state, "step": 3, "layers": [torch.ones(2, dtype=torch.bfloat16)]}, buffer)
    return buffer.getvalue()


def npz_file(compressed: bool) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **_arrays())
    return buffer.getvalue()


def _flax_ext(value: object) -> msgpack.ExtType:
    # flax.serialization's encoding of an array: extension 1 holding [shape, dtype name, C-order bytes].
    if isinstance(value, np.ndarray):
        return msgpack.ExtType(1, msgpack.packb((value.shape, value.dtype.name, value.tobytes()), use_bin_type=True))
    raise TypeError(type(value))


def flax_file() -> bytes:
    tree = {"params": _arrays(), "step": 12, "note": "fuzz", "flags": [True, None, 2.5]}
    return msgpack.packb(tree, default=_flax_ext, strict_types=True)


def gguf_file() -> bytes:
    import gguf
    from gguf.quants import quantize

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_name("fuzz")
        writer.add_token_list(["<s>", "a", "b"])
        writer.add_array("test.nested", [[1, 2], [3]])
        writer.add_tensor("f32", np.arange(6, dtype=np.float32).reshape(2, 3))
        writer.add_tensor("f16", np.ones(8, dtype=np.float16))
        weights = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
        writer.add_tensor(
            "q8", quantize(weights, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0
        )
        return finish_gguf(writer, path)


#: format -> (path it is cleaned as, producer, whether the round trip is byte for byte)
FORMATS = {
    "safetensors": ("fuzz/model.safetensors", safetensors_file, True),
    "torch": ("fuzz/model.pt", torch_file, False),
    "npz": ("fuzz/model.npz", lambda: npz_file(compressed=False), False),
    "npz-compressed": ("fuzz/model.npz", lambda: npz_file(compressed=True), False),
    "flax": ("fuzz/model.msgpack", flax_file, True),
    "gguf": ("fuzz/model.gguf", gguf_file, True),
}


@cache
def original(fmt: str) -> bytes:
    """The valid file a format's cases mutate (written once)."""
    return FORMATS[fmt][1]()


# --- mutations -------------------------------------------------------------------------------------------------------

#: Sizes and counts that break naive arithmetic: sign bits, 32- and 64-bit limits, 2^62.
HUGE = [0, 1, 0x7F, 0x80, 0xFF, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
#: What a number in a JSON header or metadata can be replaced with.
TOKENS = [
    b"true", b"false", b"null", b"-1", b"1.5", b"1e400", b"[]", b"{}", b'"x"',
    str(2**62).encode(), str(2**64).encode(), b"9" * 5000, b"[" * 3000, b"[true]",
]  # fmt: skip
NUMBER = re.compile(rb"\d+")
#: What a JSON string (a dtype, a name, an update type) can be replaced with.
STRINGS = [b'""', b'"BF16"', b'"U8"', b'"C128"', b'"dense"', b'"\\ud800"', b'"a/b"', b"1", b"null", b"[]"]
STRING = re.compile(rb'"[^"\\]{0,12}"')


def _position(draw: st.DrawFn, data: bytearray, end: bool = False) -> int:
    return draw(st.integers(0, len(data) if end else max(0, len(data) - 1)))


def flip(draw: st.DrawFn, data: bytearray) -> bytearray:
    if data:
        data[_position(draw, data)] ^= draw(st.integers(1, 255))
    return data


def set_byte(draw: st.DrawFn, data: bytearray) -> bytearray:
    if data:
        data[_position(draw, data)] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
    return data


def truncate(draw: st.DrawFn, data: bytearray) -> bytearray:
    return data[: _position(draw, data, end=True)]


def extend(draw: st.DrawFn, data: bytearray) -> bytearray:
    return data + draw(st.binary(min_size=1, max_size=64))


def cut(draw: st.DrawFn, data: bytearray) -> bytearray:
    start = _position(draw, data, end=True)
    return data[:start] + data[start + draw(st.integers(1, 16)) :]


def insert(draw: st.DrawFn, data: bytearray) -> bytearray:
    start = _position(draw, data, end=True)
    return data[:start] + draw(st.binary(min_size=1, max_size=16)) + data[start:]


def huge_number(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Overwrite a field, at any offset, with a 1- to 8-byte integer of either byte order."""
    width = draw(st.sampled_from([1, 2, 4, 8]))
    value = draw(st.sampled_from(HUGE)) % (1 << (8 * width))
    raw = value.to_bytes(width, draw(st.sampled_from(["little", "big"])))
    start = _position(draw, data, end=True)
    return data[:start] + raw + data[start + width :]


def swap_number(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Replace a decimal number (a JSON shape, offset or size) with a token that is not a sane one."""
    numbers = list(NUMBER.finditer(data))
    if not numbers:
        return data
    match = numbers[draw(st.integers(0, len(numbers) - 1))]
    return data[: match.start()] + draw(st.sampled_from(TOKENS)) + data[match.end() :]


def swap_string(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Replace a short JSON string (a dtype, a key) with another dtype, an empty or invalid string, or a non-string."""
    strings = list(STRING.finditer(data))
    if not strings:
        return data
    match = strings[draw(st.integers(0, len(strings) - 1))]
    return data[: match.start()] + draw(st.sampled_from(STRINGS)) + data[match.end() :]


MUTATORS = [flip, set_byte, truncate, extend, cut, insert, huge_number, swap_number, swap_string]


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` after one to four mutations."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        data = draw(st.sampled_from(MUTATORS))(draw, data)
    return bytes(data)


# --- checks ----------------------------------------------------------------------------------------------------------


def assert_clear_refusal(exc: GitThetaError, path: str) -> None:
    """A refusal is one line that names the file."""
    message = str(exc)
    assert "\n" not in message, f"multi-line error: {message!r}"
    assert path in message, f"the error does not name {path!r}: {message!r}"


def traced_clean(data: bytes, path: str, context: object, bound: int) -> bytes:
    """Clean ``data``; the memory traced meanwhile must stay under ``bound``, whatever the file claims."""
    tracemalloc.start()
    try:
        return clean_bytes(data, path, context)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < bound, f"reading {len(data)} bytes took {peak} bytes of memory"


def same_arrays(rebuilt: bytes, data: bytes) -> None:
    """The rebuilt archive holds exactly the arrays numpy reads from the input."""
    with np.load(io.BytesIO(data), allow_pickle=False) as expected, np.load(io.BytesIO(rebuilt)) as actual:
        assert [name for name in actual.files] == [name for name in expected.files]
        for name in expected.files:
            want = expected[name].astype(expected[name].dtype.newbyteorder("<"), order="C")
            assert (actual[name].shape, actual[name].tobytes()) == (want.shape, want.tobytes()), name


def _flat_tensors(obj: object, prefix: str = "") -> dict[str, tuple]:
    """Every tensor in a loaded checkpoint: path -> (dtype, shape, C-order bytes)."""
    torch = needs_module("torch", TORCH)
    if isinstance(obj, torch.Tensor):
        return {prefix: (obj.dtype, tuple(obj.shape), obj.contiguous().view(-1).view(torch.uint8).numpy().tobytes())}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    return {key: value for k, v in items for key, value in _flat_tensors(v, f"{prefix}/{k}").items()}


def same_tensors(rebuilt: bytes, data: bytes) -> None:
    """The rebuilt file holds the tensors torch reads from the input; where torch's own reader cannot read it (or,
    from a corrupt zip directory, reads other bytes than the records hold), each tensor's bytes are in the input."""
    torch = needs_module("torch", TORCH)
    actual = _flat_tensors(torch.load(io.BytesIO(rebuilt), weights_only=True))
    try:
        expected = _flat_tensors(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True, mmap=False))
    except Exception:  # noqa: BLE001 - torch's strict reader refuses what mapping the file could read
        expected = None
    if actual != expected:
        assert all(raw in data for _, _, raw in actual.values())


def check(fmt: str, data: bytes) -> None:
    """Clean ``data`` as a file of ``fmt``: read exactly, or refused with one clear line; bounded memory either way."""
    path, _, exact = FORMATS[fmt]
    ratio = DEFLATE_RATIO if fmt == "npz-compressed" else 4
    with filter_context() as context:
        try:
            metadata = traced_clean(data, path, context, MEMORY_SLACK + ratio * len(data))
        except GitThetaError as exc:
            assert_clear_refusal(exc, path)
            return
        if not data:
            assert metadata == b""  # an empty file is kept as it is
            return
        # git stores this metadata and compares a fresh clean of the checked-out file with it: both must hold still.
        assert CheckpointMetadata.loads(metadata).dumps() == metadata
        rebuilt = smudge_bytes(metadata, path, context)
        assert clean_bytes(rebuilt, path, context) == metadata
    if exact:
        assert rebuilt == data
    elif fmt == "torch":
        same_tensors(rebuilt, data)
    else:
        same_arrays(rebuilt, data)


# --- the fuzz tests --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def warm_up() -> None:
    """Import each format's libraries and read each file once, so that their first-use allocations are not traced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fmt in FORMATS:
            check(fmt, original(fmt))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_the_unmutated_files_round_trip(fmt: str) -> None:
    check(fmt, original(fmt))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mutated_files_are_read_exactly_or_refused_clearly(fmt: str) -> None:
    @FUZZ
    @given(data=mutated(original(fmt)))
    def fuzz(data: bytes) -> None:
        check(fmt, data)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about odd pickles in mutated files
        fuzz()


#: A huge size in each encoding a length field can have: (width, byte order, value).
CLAIMS = [
    (width, order, claim)
    for claim in (2**31, 2**40, 2**62)
    for width, order in ((8, "little"), (4, "little"), (4, "big"))
]


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "flax", "gguf"])
def test_a_size_claimed_in_a_few_bytes_is_never_allocated(fmt: str) -> None:
    """Every field-sized window, in turn, set to a huge number: the file is refused within the memory bound."""
    data = original(fmt)
    for start in range(len(data) - 8):
        width, order, claim = CLAIMS[start % len(CLAIMS)]
        check(fmt, data[:start] + (claim % (1 << (8 * width))).to_bytes(width, order) + data[start + width :])


# --- metadata --------------------------------------------------------------------------------------------------------


@cache
def stored(fmt: str) -> tuple[bytes, dict[str, bytes]]:
    """A real file's metadata, and the objects it needs."""
    path = FORMATS[fmt][0]
    with filter_context() as context:
        metadata = clean_bytes(original(fmt), path, context)
        return metadata, dict(context.store.objects)


@pytest.mark.parametrize("fmt", ["safetensors", "torch", "npz", "flax", "gguf"])
def test_mutated_metadata_loads_exactly_or_is_refused_clearly(fmt: str) -> None:
    from git_theta.storage.objects import MemoryObjectStore

    metadata, objects = stored(fmt)
    path = FORMATS[fmt][0]

    @FUZZ
    @given(data=mutated(metadata))
    def fuzz(data: bytes) -> None:
        try:
            loaded = CheckpointMetadata.loads(data)
        except MetadataError as exc:
            assert "\n" not in str(exc)
            return
        assert CheckpointMetadata.loads(loaded.dumps()) == loaded
        store = MemoryObjectStore()
        store.objects.update(objects)
        with filter_context(store) as context:
            try:
                smudge_bytes(data, path, context)
            except GitThetaError as exc:
                assert_clear_refusal(about(path, exc), path)  # as the filter process reports it

    fuzz()
