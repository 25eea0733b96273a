"""Stored tensors compared block by block: the statistics of whole arrays, in a few blocks' memory."""

from __future__ import annotations

import time
import tracemalloc

from git_theta.diffs.numeric import aligned, compare, compare_pairs
from git_theta.diffs.store import ObjectReader
from git_theta.representations import pairs as pairs_module
from git_theta.storage.objects import MemoryObjectStore
from tests.unit.representations.test_pairs import versions


def test_a_fine_tune_compares_from_its_keyframe_in_a_few_blocks_of_memory(monkeypatch) -> None:
    hash_blocks = pairs_module._update

    def lagging(*args: object) -> None:  # the worst case: hashing falls behind, so its queue fills up too
        time.sleep(0.01)
        hash_blocks(*args)

    monkeypatch.setattr(pairs_module, "_update", lagging)
    store = MemoryObjectStore()
    (old, new), (first, second) = versions(store, 2, (2048, 2048))  # 16 MiB each, the second a delta of the first
    reader = ObjectReader(store)
    want = compare(memoryview(old).cast("B"), memoryview(new).cast("B"), "F32", "F32")
    tracemalloc.start()
    try:
        pairs = reader.pair_blocks("m", "w", first, second)
        assert pairs is not None  # the keyframe is decoded once, for both
        shared = compare_pairs(pairs, "F32", "F32")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    streamed = compare_pairs(
        aligned(reader.blocks("m", "w", first), reader.blocks("m", "w", second), 4, 4), "F32", "F32"
    )
    assert shared == streamed == want or (shared.changed == want.changed and abs(shared.l2 / want.l2 - 1) < 1e-9)
    assert abs(streamed.l2 / want.l2 - 1) < 1e-9 and abs(streamed.cos - want.cos) < 1e-12
    # Pairs of blocks decoded and hashed ahead (at most 2 * AHEAD + 1 of them, 3 MiB each) and float64 chunks: less
    # than the two tensors (32 MiB), let alone float64 copies of them (64 MiB).
    assert peak < 2 * old.nbytes, peak
