#!/usr/bin/env python3
"""What verifying every object read costs: checkout's streaming read with its SHA-256 checks, against decoding alone.

Every read of an object compares the tensor it gives with the tensor's SHA-256 (docs/guarantees.md). This script
stores a checkpoint's tensors as objects, then reads them back the way a checkout does (``stream_tensors``, blocks
decoded ahead on every core, hashed in order on a thread of their own) and the same way without any hashing, and
reports wall-clock and CPU time of both, best of ``--repeat``.

Usage: python benchmarks/bench_verify.py [--size-mib 1024] [--tensor-mib 64] [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from git_theta.checkpoints.base import Tensor, TensorSpec
from git_theta.metadata import TensorEntry
from git_theta.pipeline import frame_executor, ordered_map
from git_theta.representations.cheapest import store_tensor
from git_theta.representations.stream import AHEAD, stream_tensors
from git_theta.session.context import Session
from git_theta.storage.codec import ObjectReader
from git_theta.storage.objects import LfsObjectStore


def store_model(store: LfsObjectStore, total: int, tensor: int) -> list[tuple[str, TensorEntry]]:
    """Store ``total`` bytes of normal fp32 weights (scale 0.02) in tensors of ``tensor`` bytes; return the entries."""
    rng = np.random.default_rng(0)
    context = Session(store)
    entries = []
    for index in range(total // tensor):
        values = rng.standard_normal(tensor // 4, dtype=np.float32) * np.float32(0.02)
        spec = TensorSpec(f"w{index}", "F32", values.shape)
        entries.append((spec.name, store_tensor(context, Tensor(spec, memoryview(values.tobytes())))[1]))
    context.close()
    return entries


def read_verified(store: LfsObjectStore, entries: list[tuple[str, TensorEntry]]) -> int:
    """Read every tensor as a checkout does; return the bytes read."""
    size = 0
    for blocks in stream_tensors(store, entries, frame_executor()):
        size += sum(len(block) for block in blocks)
    return size


def read_unverified(store: LfsObjectStore, entries: list[tuple[str, TensorEntry]]) -> int:
    """The same reads and decoding, with no hash computed: the cost without verification."""
    size = 0
    for label, entry in entries:
        with ObjectReader(store.open(entry.oid), entry.hash, entry.nbytes, entry.stored, label) as reader:
            size += sum(len(block) for block in ordered_map(frame_executor(), reader.read_block, reader.blocks, AHEAD))
    return size


def timed(read: Callable[[], int], repeat: int) -> tuple[float, float]:
    """Best wall-clock and CPU seconds of ``read`` over ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        read()
        after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
        walls.append(wall)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return min(walls), min(cpus)


def sha256_rate(size: int = 256 << 20) -> float:
    """SHA-256 throughput of this machine, one core, in GB/s."""
    data = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()
    start = time.perf_counter()
    hashlib.sha256(data).digest()
    return size / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the generated checkpoint (1024)")
    parser.add_argument("--tensor-mib", type=int, default=64, help="size of each tensor (64)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats; the best is reported (3)")
    parser.add_argument("--workdir", type=Path, help="where the objects are stored (default: $TMPDIR)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="git-theta-bench-verify-") as directory:
        store = LfsObjectStore(Path(directory))
        entries = store_model(store, args.size_mib << 20, args.tensor_mib << 20)
        verified = timed(lambda: read_verified(store, entries), args.repeat)
        unverified = timed(lambda: read_unverified(store, entries), args.repeat)
    gib = args.size_mib / 1024
    print(f"{args.size_mib} MiB in tensors of {args.tensor_mib} MiB; SHA-256 on one core: {sha256_rate():.2f} GB/s")
    print("| read | wall s | CPU s | wall s per GiB |")
    print("| --- | ---: | ---: | ---: |")
    for name, (wall, cpu) in (("verified (as shipped)", verified), ("decoding only", unverified)):
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / gib:.2f} |")
    print(f"verification costs {verified[0] / unverified[0] - 1:+.0%} wall, {verified[1] / unverified[1] - 1:+.0%} CPU")


if __name__ == "__main__":
    main()
