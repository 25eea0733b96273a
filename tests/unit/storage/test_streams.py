"""A ``streams`` block's streams: noise is stored raw at once, found so on a few windows; anything else is compressed
whole, however its first bytes look."""

from __future__ import annotations

import os
from typing import Any

import pytest
import zstandard

from git_theta.storage import streams
from git_theta.storage.streams import PROBE, PROBED, PROBES, _compressed_or_raw, encode_block


def test_a_stream_of_noise_is_stored_raw_without_compressing_it_whole() -> None:
    noise = memoryview(os.urandom(PROBED))
    assert _compressed_or_raw(noise) is noise


def test_a_stream_compressible_past_its_first_window_is_compressed() -> None:
    # Noise, then zeros from the second window on (a padded embedding's rows, say): one window shrinking is enough.
    length = PROBED
    data = os.urandom(length // PROBES) + bytes(length - length // PROBES)
    stored = _compressed_or_raw(memoryview(data))
    assert len(stored) < length // 2
    assert zstandard.ZstdDecompressor().decompress(stored, max_output_size=length) == data


def test_short_streams_are_not_probed_and_probing_is_a_function_of_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = streams._any_window_shrinks

    def counted(stream: memoryview, compressor: Any) -> bool:
        calls.append(len(stream))
        return real(stream, compressor)

    monkeypatch.setattr(streams, "_any_window_shrinks", counted)
    short = memoryview(os.urandom(PROBED - 1))
    assert _compressed_or_raw(short) is short and calls == []
    block = memoryview(os.urandom(4 * PROBED))  # four streams of PROBED bytes, each probed
    assert encode_block(block, 4, False) == encode_block(block, 4, False)
    assert calls == [PROBED] * 8 and PROBE * PROBES <= PROBED
