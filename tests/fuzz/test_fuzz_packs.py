"""Fuzzing packs: random bytes never get past the pack parser with a piece outside the pack, and a damaged pack
gives the exact tensors or one line naming it, within bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from git_theta.checkpoints.base import Tensor, TensorSpec
from git_theta.metadata import TensorEntry
from git_theta.representations.cheapest import store_tensor
from git_theta.representations.packing import SmallTensors
from git_theta.representations.read import read_tensor
from git_theta.representations.stream import stream_tensors
from git_theta.session.context import Session
from git_theta.storage.errors import ObjectError
from git_theta.storage.objects import MemoryObjectStore
from git_theta.storage.packs import MAGIC, forget_packs, parse_pack
from tests.fuzz.conftest import PROFILE

FUZZ = settings(settings.get_profile(PROFILE))
LABEL = "fuzzed (tensor 'w' of m.safetensors)"


@FUZZ
@given(data=st.binary(max_size=256), magic=st.booleans())
def test_random_bytes_parse_to_pieces_inside_the_pack_or_are_refused(data: bytes, magic: bool) -> None:
    pack = MAGIC + data if magic else data
    try:
        pieces = parse_pack(pack, "p")
    except ObjectError as exc:
        assert "\n" not in str(exc)
        return
    assert all(0 < offset and offset + length <= len(pack) for offset, length in pieces)
    assert sum(length for _, length in pieces) <= len(pack)


def _packed() -> tuple[MemoryObjectStore, dict[str, TensorEntry], dict[str, bytes]]:
    """A store holding one pack of small tensors, their entries and their bytes."""
    rng = np.random.default_rng(0)
    values = {
        "smooth": (1 + rng.standard_normal(1000) * 1e-3).astype(np.float32).tobytes(),  # compressed
        "noise": rng.integers(0, 256, 700, dtype=np.uint8).astype(np.float32).tobytes(),
        "tiny": np.arange(3, dtype=np.float32).tobytes(),
        "again": np.arange(3, dtype=np.float32).tobytes(),  # the same piece as "tiny"
    }
    store, small = MemoryObjectStore(), SmallTensors()
    context = Session(store)
    entries = {}
    for name, raw in values.items():
        spec = TensorSpec(name, "F32", (len(raw) // 4,))
        entries[name] = store_tensor(context, Tensor(spec, memoryview(raw)), small)[1]
    small.finish(store, entries)
    context.close()
    assert len(store.objects) == 1 and all(entry.packed for entry in entries.values())
    return store, entries, values


STORE, ENTRIES, VALUES = _packed()
(PACK_OID,) = STORE.objects


def _read_all(store: MemoryObjectStore, entries: list[TensorEntry]) -> list[bytes]:
    forget_packs()
    whole = [bytes(read_tensor(store, entry, LABEL)) for entry in entries]
    streamed = stream_tensors(store, [(LABEL, entry) for entry in entries], None)
    return whole + [b"".join(bytes(block) for block in blocks) for blocks in streamed]


@FUZZ
@given(data=st.data(), renamed=st.booleans())
def test_a_mutated_pack_gives_the_exact_tensors_or_one_line(data: st.DataObject, renamed: bool) -> None:
    """``renamed``: the damaged pack stored under its own new id, as if the metadata named it (a forged or
    mistaken reference): then the table, the pieces and the tensors' hashes must catch it."""
    pack = bytearray(STORE.objects[PACK_OID])
    near = st.integers(0, 40)  # the magic, the count and the table of lengths
    for position in data.draw(st.lists(st.one_of(near, st.integers(0, len(pack) - 1)), min_size=1, max_size=4)):
        pack[position] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        pack = pack[: data.draw(st.integers(0, len(pack)))] + data.draw(st.binary(max_size=64))
    damaged, entries = MemoryObjectStore(), list(ENTRIES.values())
    damaged.objects = {PACK_OID: bytes(pack)}
    if renamed:
        oid, stored = damaged.put(bytes(pack))
        entries = [entry._replace(oid=oid, stored=stored) for entry in entries]
    tracemalloc.start()
    try:
        results = _read_all(damaged, entries)
    except ObjectError as exc:
        assert "\n" not in str(exc) and LABEL in str(exc)
        return
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < (16 << 20), peak
    expected = list(VALUES.values())
    assert results == expected + expected


def test_the_intact_pack_reads_back() -> None:
    expected = list(VALUES.values())
    assert _read_all(STORE, list(ENTRIES.values())) == expected + expected
    assert ENTRIES["tiny"].packed == ENTRIES["again"].packed  # equal pieces are stored once
