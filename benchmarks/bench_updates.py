#!/usr/bin/env python3
"""Benchmark how much git-theta stores for new versions of a checkpoint, and what delta chains cost at checkout.

Three scenarios, each in fresh repositories (one with git-theta, one with ``git lfs track``) on the same files:

1. ``finetune``  commit all-MiniLM-L6-v2, then the same model after a real dense fine-tune (``finetune.py``:
                 100 AdamW steps, lr 2e-5), in bf16 and in fp32: bytes of the new LFS objects / raw bytes;
2. ``sparse``    commit the fp32 model, then the model with 1% of the entries of four tensors set to new random
                 values: bytes of the new objects / raw bytes of those four tensors;
3. ``chain``     commit a sequence of versions (each the previous plus noise at the scale of the real fine-tune's
                 change of that tensor) with git-theta's default ``theta.maxDeltaDepth``, then time
                 ``git checkout REV -- FILE`` of every version;
4. ``large``     commit a generated 1 GiB model (16 F32 tensors of 64 MiB), then the same with every element changed
                 at the relative scale of the real fine-tune (2e-3): ``git add`` time and peak memory at scale.

Usage: python benchmarks/bench_updates.py [--quick] [--steps N] [--repeat N] [--json FILE] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
from bench_core import (
    FILE_NAME,
    TOOLS,
    BenchError,
    file_sha256,
    git,
    init_repo,
    isolated_env,
    place_file,
    read_header,
    timed_git,
    versions,
    write_safetensors,
)

from git_theta.git.repo import DEFAULT_DEPTH, DEPTH_KEY

DTYPES = ("bf16", "fp32")
#: A big embedding matrix and 384x384, 1536x384 and 384x1536 matrices of the attention and feed-forward blocks.
SPARSE_TENSORS = (
    "embeddings.word_embeddings.weight",
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.3.intermediate.dense.weight",
    "encoder.layer.5.output.dense.weight",
)
SPARSE_FRACTION = 0.01
#: The generated large model: tensors, their side, the weights' scale and the fine-tune's change relative to it
#: (the real fine-tune changes every element by about 2e-3 of the weights' spread).
LARGE_TENSORS, LARGE_SIDE, LARGE_SCALE, LARGE_CHANGE = 16, 4096, 0.02, 2e-3
#: ``git checkout`` of each chain version is timed this many times per repeat (best is reported).
CHECKOUT_TRIALS = 2


# --------------------------------------------------------------------------------------------------- checkpoints


def finetuned(cache: Path, steps: int, lr: float, seed: int) -> dict[str, Path]:
    """Base and fine-tuned MiniLM in fp32 and bf16 (keys ``base-fp32`` ...), trained once and cached in ``cache``."""
    directory = cache / f"steps{steps}-lr{lr:g}-seed{seed}"
    paths = {
        f"{kind}-{dtype}": directory / f"{kind}-{dtype}.safetensors" for kind in ("base", "tuned") for dtype in DTYPES
    }
    if all(path.is_file() for path in paths.values()):
        print(f"using the cached fine-tune in {directory}", file=sys.stderr)
        return paths
    import finetune
    import torch

    print(f"fine-tuning MiniLM ({steps} AdamW steps, lr {lr:g}) into {directory}", file=sys.stderr)
    directory.mkdir(parents=True, exist_ok=True)
    base, tuned = finetune.finetune(steps, lr, seed)
    for dtype, torch_dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        finetune.save(base, paths[f"base-{dtype}"], torch_dtype)
        finetune.save(tuned, paths[f"tuned-{dtype}"], torch_dtype)
    return paths


def f32_view(buffer: bytes | bytearray, data_start: int, info: dict) -> np.ndarray:
    """The values of one F32 tensor inside a whole safetensors file's bytes (writable if ``buffer`` is)."""
    if info["dtype"] != "F32":
        raise BenchError(f"expected an F32 tensor, found {info['dtype']}")
    begin, end = info["data_offsets"]
    return np.frombuffer(buffer, dtype="<f4", count=(end - begin) // 4, offset=data_start + begin)


def write_sparse_edit(source: Path, dest: Path, names: tuple[str, ...], seed: int) -> dict[str, int]:
    """Copy ``source`` with SPARSE_FRACTION of the entries of ``names`` (random positions) set to new random values.

    The new values are normal with the tensor's own standard deviation. Returns each tensor's raw size in bytes.
    """
    header, data_start = read_header(source)
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(seed)
    sizes = {}
    for name in names:
        values = f32_view(data, data_start, header[name])
        count = max(1, round(SPARSE_FRACTION * values.size))
        positions = rng.choice(values.size, count, replace=False)
        values[positions] = rng.normal(0.0, float(values.std()), count).astype(np.float32)
        sizes[name] = values.nbytes
    dest.write_bytes(data)
    return sizes


def write_large_pair(data_dir: Path, count: int = LARGE_TENSORS, side: int = LARGE_SIDE) -> tuple[Path, Path]:
    """A generated model and its fine-tuned version, written one tensor at a time."""
    shapes = {f"layers.{index:02d}.weight": (side, side) for index in range(count)}

    def base(index: int) -> np.ndarray:
        return np.random.default_rng(index).standard_normal((side, side), dtype=np.float32) * np.float32(LARGE_SCALE)

    def tuned(index: int) -> np.ndarray:
        noise = np.random.default_rng(1000 + index).standard_normal((side, side), dtype=np.float32)
        return base(index) + noise * np.float32(LARGE_SCALE * LARGE_CHANGE)

    paths = data_dir / "large-base.safetensors", data_dir / "large-tuned.safetensors"
    write_safetensors(paths[0], shapes, base)
    write_safetensors(paths[1], shapes, tuned)
    return paths


def write_chain(base: Path, tuned: Path, data_dir: Path, count: int, seed: int) -> list[Path]:
    """Version 1 is ``base``; each next version adds to every F32 tensor normal noise whose standard deviation is
    that of the real fine-tune's change of the tensor (tuned - base), like one more fine-tune of the same size."""
    header, data_start = read_header(base)
    tuned_header, tuned_start = read_header(tuned)
    data, tuned_data = bytearray(base.read_bytes()), tuned.read_bytes()
    scales = {}
    for name, info in header.items():
        if info["dtype"] == "F32":
            old = f32_view(data, data_start, info).astype(np.float64)
            scales[name] = float(np.std(f32_view(tuned_data, tuned_start, tuned_header[name]) - old))
    rng = np.random.default_rng(seed)
    paths = [base]
    for version in range(2, count + 1):
        for name, scale in scales.items():
            if scale > 0:
                values = f32_view(data, data_start, header[name])
                values += (rng.standard_normal(values.size) * scale).astype(np.float32)
        paths.append(data_dir / f"chain-{version}.safetensors")
        paths[-1].write_bytes(data)
    return paths


# ------------------------------------------------------------------------------------------------- repositories


@dataclass
class Commit:
    """One ``git add`` + ``git commit`` of the checkpoint: its revision, add time, and the LFS objects it added."""

    rev: str
    add_seconds: float
    peak_kib: int | None
    new_objects: dict[str, int]

    @property
    def new_bytes(self) -> int:
        """Bytes of the objects this commit added to ``.git/lfs/objects``."""
        return sum(self.new_objects.values())


@dataclass
class BenchRepo:
    """A fresh repository tracking FILE_NAME with one tool."""

    path: Path
    tool: str
    env: dict[str, str]
    usage: Path

    @classmethod
    def create(cls, root: Path, tool: str, env: dict[str, str]) -> BenchRepo:
        """Set up ``root/tool`` as bench_core does (isolated config, filter wrapped to record its peak memory)."""
        repo = cls(root / tool, tool, env, root / f"{tool}.usage")
        init_repo(repo.path, tool, env, repo.usage)
        return repo

    def commit(self, source: Path, message: str) -> Commit:
        """Put ``source`` in place, time ``git add``, commit, and list the LFS objects that appeared."""
        before = lfs_objects(self.path)
        place_file(source, self.path)
        run = timed_git(self.path, self.env, self.usage, "add", FILE_NAME)
        git(self.path, self.env, "commit", "-q", "-m", message)
        new = {oid: size for oid, size in lfs_objects(self.path).items() if oid not in before}
        rev = git(self.path, self.env, "rev-parse", "HEAD").stdout.decode().strip()
        return Commit(rev, run.seconds, run.peak_kib, new)

    def checkout(self, rev: str, expected_sha256: str) -> float:
        """Delete the working file, time ``git checkout REV -- FILE``, check the bytes; return the seconds."""
        (self.path / FILE_NAME).unlink()
        run = timed_git(self.path, self.env, self.usage, "checkout", rev, "--", FILE_NAME)
        if file_sha256(self.path / FILE_NAME) != expected_sha256:
            raise BenchError(f"{self.tool}: checkout of {rev[:10]} did not give back the committed file byte for byte")
        return run.seconds

    def tensors(self, rev: str) -> dict[str, dict]:
        """``git theta ls --json REV FILE``: each tensor's entry (``update``, ``base``, ``stored`` ...)."""
        listing = json.loads(git(self.path, self.env, "theta", "ls", "--json", rev, FILE_NAME).stdout)
        return listing[FILE_NAME]["tensors"]


def lfs_objects(repo: Path) -> dict[str, int]:
    """Object name -> size of every object in the repository's local LFS store."""
    root = repo / ".git" / "lfs" / "objects"
    return {path.name: path.stat().st_size for path in root.rglob("*") if path.is_file()} if root.exists() else {}


def fresh_pair(work: Path, name: str, index: int, env: dict[str, str]) -> tuple[Path, dict[str, BenchRepo], tuple]:
    """New git-theta and LFS repositories for one repeat, and the order to run the tools in (alternating)."""
    root = work / f"{name}-{index}"
    repos = {tool: BenchRepo.create(root, tool, env) for tool in TOOLS}
    return root, repos, TOOLS if index % 2 == 0 else TOOLS[::-1]


def update_kinds(tensors: dict[str, dict], new_objects: dict[str, int]) -> dict[str, int]:
    """How many tensors a commit stored as each update type; ``unchanged`` reuse an object already stored."""
    kinds: dict[str, int] = {}
    for entry in tensors.values():
        kind = entry.get("update", "dense") if entry["oid"] in new_objects else "unchanged"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def largest(tensors: dict[str, dict], new_objects: dict[str, int], count: int = 5) -> list[dict]:
    """The tensors whose new objects are largest: where the stored bytes go."""
    rows = [
        {"tensor": name, "update": entry.get("update", "dense"), "nbytes": entry["nbytes"], "stored": entry["stored"]}
        for name, entry in tensors.items()
        if entry["oid"] in new_objects
    ]
    return sorted(rows, key=lambda row: -row["stored"])[:count]


# ------------------------------------------------------------------------------------------------- scenarios


@dataclass
class FinetuneResult:
    """Base then fine-tuned model in one dtype. Byte counts are from the last repeat (they do not vary)."""

    dtype: str
    file_bytes: int
    theta_first: int = 0
    theta_new: int = 0
    lfs_new: int = 0
    theta_add: list[float] = field(default_factory=list)
    lfs_add: list[float] = field(default_factory=list)
    theta_checkout: list[float] = field(default_factory=list)
    lfs_checkout: list[float] = field(default_factory=list)
    theta_peak_mib: float | None = None
    kinds: dict[str, int] = field(default_factory=dict)
    largest: list[dict] = field(default_factory=list)


def bench_finetune(dtype: str, base: Path, tuned: Path, work: Path, env: dict, repeat: int) -> FinetuneResult:
    """Commit base then tuned in both tools; measure the tuned commit's new objects and ``git add`` time."""
    result = FinetuneResult(dtype, tuned.stat().st_size)
    expected = file_sha256(tuned)
    for index in range(repeat):
        root, repos, order = fresh_pair(work, f"finetune-{dtype}", index, env)
        for tool in order:
            first = repos[tool].commit(base, "base")
            second = repos[tool].commit(tuned, "fine-tuned")
            checkout = repos[tool].checkout(second.rev, expected)  # the stored updates rebuild the exact file
            getattr(result, f"{tool}_checkout").append(checkout)
            if tool == "theta":
                result.theta_first, result.theta_new = first.new_bytes, second.new_bytes
                result.theta_add.append(second.add_seconds)
                peak = (second.peak_kib or 0) / 1024
                result.theta_peak_mib = max(result.theta_peak_mib or 0, peak) or None
                tensors = repos[tool].tensors(second.rev)
                result.kinds = update_kinds(tensors, second.new_objects)
                result.largest = largest(tensors, second.new_objects)
            else:
                result.lfs_new = second.new_bytes
                result.lfs_add.append(second.add_seconds)
        shutil.rmtree(root)
        print(
            f"  finetune {dtype} repeat {index + 1}/{repeat}: tuned add {result.theta_add[-1]:.2f}/"
            f"{result.lfs_add[-1]:.2f} s, theta stored {result.theta_new / result.file_bytes:.3f} of raw",
            file=sys.stderr,
        )
    return result


@dataclass
class SparseResult:
    """1% of the entries of a few tensors changed."""

    raw_bytes: int
    tensors: list[dict] = field(default_factory=list)
    theta_new: int = 0
    lfs_new: int = 0
    theta_add: list[float] = field(default_factory=list)
    lfs_add: list[float] = field(default_factory=list)


def bench_sparse(base: Path, edited: Path, sizes: dict[str, int], work: Path, env: dict, repeat: int) -> SparseResult:
    """Commit the base, then the edited model; measure the new objects against the edited tensors' raw size."""
    result = SparseResult(sum(sizes.values()))
    for index in range(repeat):
        root, repos, order = fresh_pair(work, "sparse", index, env)
        for tool in order:
            repos[tool].commit(base, "base")
            second = repos[tool].commit(edited, "1% of a few tensors changed")
            if tool == "theta":
                result.theta_new = second.new_bytes
                result.theta_add.append(second.add_seconds)
                tensors = repos[tool].tensors(second.rev)
                result.tensors = [
                    {
                        "tensor": name,
                        "shape": tensors[name]["shape"],
                        "nbytes": tensors[name]["nbytes"],
                        "stored": tensors[name]["stored"],
                        "update": tensors[name].get("update", "dense"),
                    }
                    for name in sizes
                ]
                changed = [name for name, entry in tensors.items() if entry["oid"] in second.new_objects]
                if sorted(changed) != sorted(sizes):
                    raise BenchError(f"expected new objects for exactly {sorted(sizes)}, got them for {changed}")
            else:
                result.lfs_new = second.new_bytes
                result.lfs_add.append(second.add_seconds)
        shutil.rmtree(root)
    return result


@dataclass
class VersionResult:
    """One version of the chain."""

    version: int
    file_bytes: int
    theta_new: int = 0
    lfs_new: int = 0
    max_depth: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    theta_add: list[float] = field(default_factory=list)
    lfs_add: list[float] = field(default_factory=list)
    theta_checkout: list[float] = field(default_factory=list)
    lfs_checkout: list[float] = field(default_factory=list)


def bench_chain(paths: list[Path], work: Path, env: dict, repeat: int) -> list[VersionResult]:
    """Commit every version in order, then time the checkout of each (oldest to newest, CHECKOUT_TRIALS rounds)."""
    results = [VersionResult(number, path.stat().st_size) for number, path in enumerate(paths, 1)]
    hashes = [file_sha256(path) for path in paths]
    for index in range(repeat):
        root, repos, order = fresh_pair(work, "chain", index, env)
        revs: dict[str, list[str]] = {}
        for tool in order:
            commits = [repos[tool].commit(path, f"version {n}") for n, path in enumerate(paths, 1)]
            revs[tool] = [commit.rev for commit in commits]
            for result, commit in zip(results, commits, strict=True):
                getattr(result, f"{tool}_add").append(commit.add_seconds)
                setattr(result, f"{tool}_new", commit.new_bytes)
                if tool == "theta":
                    tensors = repos[tool].tensors(commit.rev)
                    result.max_depth = max(len(entry.get("base", ())) for entry in tensors.values())
                    result.kinds = update_kinds(tensors, commit.new_objects)
        for _ in range(CHECKOUT_TRIALS):
            for tool in order:
                for result, rev, digest in zip(results, revs[tool], hashes, strict=True):
                    getattr(result, f"{tool}_checkout").append(repos[tool].checkout(rev, digest))
        shutil.rmtree(root)
        print(f"  chain repeat {index + 1}/{repeat} done", file=sys.stderr)
    return results


# ----------------------------------------------------------------------------------------------------- results


@dataclass
class Results:
    """Everything measured, for the table and the JSON file."""

    steps: int
    lr: float
    depth: int
    finetune: dict[str, FinetuneResult]
    sparse: SparseResult
    chain: list[VersionResult]
    large: FinetuneResult | None = None

    def checkout_ratio(self, tool: str, version: int | None = None, reference: int = 1) -> float:
        """Best checkout time of ``version`` (default: the slowest version) over that of version ``reference``."""
        best = [min(getattr(result, f"{tool}_checkout")) for result in self.chain]
        return (best[version - 1] if version else max(best)) / best[reference - 1]


def check_targets(results: Results) -> list[dict[str, object]]:
    """The targets from the issue, each with its measured value."""
    bf16, fp32, sparse = results.finetune["bf16"], results.finetune["fp32"], results.sparse
    deepest = max(version.max_depth for version in results.chain)
    rows = [
        ("fine-tune bf16: new objects <= 0.25 of raw", bf16.theta_new / bf16.file_bytes, 0.25),
        ("fine-tune fp32: new objects <= 0.6 of raw", fp32.theta_new / fp32.file_bytes, 0.6),
        ("1% of 4 tensors changed: new objects <= 0.08 of their raw size", sparse.theta_new / sparse.raw_bytes, 0.08),
        (f"chain: max depth <= theta.maxDeltaDepth ({results.depth})", deepest, results.depth),
        # Version 1 is stored whole; every later version is an update. Their checkout must not grow with N.
        (
            f"chain: checkout of version {len(results.chain)} <= 1.25x version 2 (the first stored as updates)",
            results.checkout_ratio("theta", len(results.chain), reference=2),
            1.25,
        ),
        (
            "chain: checkout of the slowest version <= 1.25x version 2",
            results.checkout_ratio("theta", reference=2),
            1.25,
        ),
    ]
    if results.large is not None:
        large = results.large
        rows.append(
            ("fine-tune of a 1 GiB model: git add <= 1.0x git lfs", min(large.theta_add) / min(large.lfs_add), 1.0)
        )
        checkout = min(large.theta_checkout) / min(large.lfs_checkout)
        rows.append(("fine-tune of a 1 GiB model: checkout (deltas) <= 1.5x git lfs", checkout, 1.5))
    return [
        {"target": text, "measured": round(value, 3), "limit": limit, "met": value <= limit}
        for text, value, limit in rows
    ]


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items(), key=lambda item: -item[1]))


def print_report(results: Results, targets: list[dict[str, object]]) -> None:
    """Print the results as markdown tables."""
    print(f"\n### Fine-tunes: all-MiniLM-L6-v2 ({results.steps} AdamW steps, lr {results.lr:g}), generated 1 GiB\n")
    print(
        "| dtype | file MB | theta 1st / raw | theta tuned / raw | lfs tuned / raw | add s theta | add s lfs "
        "| checkout s theta | checkout s lfs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for item in [*results.finetune.values(), *([results.large] if results.large else [])]:
        raw = item.file_bytes
        print(
            f"| {item.dtype} | {raw / 1e6:.1f} | {item.theta_first / raw:.3f} | {item.theta_new / raw:.3f} | "
            f"{item.lfs_new / raw:.3f} | {min(item.theta_add):.2f} | {min(item.lfs_add):.2f} | "
            f"{min(item.theta_checkout):.2f} | {min(item.lfs_checkout):.2f} |"
        )
    for item in results.finetune.values():
        print(f"\n{item.dtype} tuned commit: {_kinds(item.kinds)}; largest new objects:")
        for row in item.largest:
            print(
                f"- {row['tensor']} ({row['update']}): {row['stored'] / 1e6:.2f} of {row['nbytes'] / 1e6:.2f} MB "
                f"({row['stored'] / row['nbytes']:.2f})"
            )
    sparse = results.sparse
    if results.large is not None:
        print(f"\n{results.large.dtype}: peak memory of git-theta's filter {results.large.theta_peak_mib:.0f} MiB")
    print(f"\n### {SPARSE_FRACTION:.0%} of the entries of {len(sparse.tensors)} fp32 tensors changed\n")
    print("| tensor | shape | raw MB | theta stored MB | stored / raw | update |")
    print("|---|---|---:|---:|---:|---|")
    for row in sparse.tensors:
        shape = "x".join(str(dim) for dim in row["shape"])
        print(
            f"| {row['tensor']} | {shape} | {row['nbytes'] / 1e6:.3f} | {row['stored'] / 1e6:.3f} | "
            f"{row['stored'] / row['nbytes']:.3f} | {row['update']} |"
        )
    print(
        f"| all (theta) | | {sparse.raw_bytes / 1e6:.3f} | {sparse.theta_new / 1e6:.3f} | "
        f"{sparse.theta_new / sparse.raw_bytes:.3f} | |\n"
        f"| all (lfs, whole file) | | {sparse.raw_bytes / 1e6:.3f} | {sparse.lfs_new / 1e6:.3f} | "
        f"{sparse.lfs_new / sparse.raw_bytes:.3f} | |"
    )
    print(f"\nadd s: theta {min(sparse.theta_add):.2f}, lfs {min(sparse.lfs_add):.2f}")
    print(f"\n### Chain of {len(results.chain)} fp32 versions, theta.maxDeltaDepth {results.depth}\n")
    print(
        "| version | theta new / raw | max depth | tensors stored as | add s theta | add s lfs "
        "| checkout s theta | checkout s lfs |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    for item in results.chain:
        print(
            f"| {item.version} | {item.theta_new / item.file_bytes:.3f} | {item.max_depth} | {_kinds(item.kinds)} | "
            f"{min(item.theta_add):.2f} | {min(item.lfs_add):.2f} | {min(item.theta_checkout):.2f} | "
            f"{min(item.lfs_checkout):.2f} |"
        )
    last = len(results.chain)
    print(
        f"\ncheckout version {last} / version 2: theta {results.checkout_ratio('theta', last, reference=2):.2f}x; "
        f"version {last} / version 1: theta {results.checkout_ratio('theta', last):.2f}x, "
        f"lfs {results.checkout_ratio('lfs', last):.2f}x; slowest / version 1: theta "
        f"{results.checkout_ratio('theta'):.2f}x, lfs {results.checkout_ratio('lfs'):.2f}x"
    )
    print("\nSeconds: best over the repeats (and checkout trials), wall clock of the git command.\n")
    print("### Targets\n")
    print("| target | measured | result |")
    print("|---|---:|---|")
    for item in targets:
        print(f"| {item['target']} | {item['measured']} | {'PASS' if item['met'] else 'FAIL'} |")


# ------------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 10-step fine-tune, 5 chain versions, one repeat")
    parser.add_argument("--steps", type=int, help="AdamW steps of the fine-tune (100; 10 with --quick)")
    parser.add_argument("--lr", type=float, default=2e-5, help="learning rate of the fine-tune (2e-5)")
    parser.add_argument("--versions", type=int, help="versions in the chain (8; 5 with --quick)")
    parser.add_argument(
        "--repeat", type=int, help="fresh repositories per scenario; the best time is reported (3; 1 with --quick)"
    )
    parser.add_argument("--no-large", action="store_true", help="skip the generated 1 GiB model (4 GiB of disk)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--workdir", type=Path, help="parent directory for the temporary data (default: $TMPDIR)")
    parser.add_argument("--cache", type=Path, help="where the fine-tuned weights are kept (WORKDIR/git-theta-finetune)")
    args = parser.parse_args(argv)
    args.steps = args.steps or (10 if args.quick else 100)
    args.versions = args.versions or (5 if args.quick else 8)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.cache = args.cache or (args.workdir or Path(tempfile.gettempdir())) / "git-theta-finetune"
    if args.versions < 2 or args.repeat < 1:
        parser.error("--versions must be at least 2 and --repeat at least 1")
    return args


def run(args: argparse.Namespace, work: Path) -> Results:
    """Prepare the checkpoints and run the three scenarios."""
    home, data = work / "home", work / "data"
    home.mkdir()
    data.mkdir()
    env = isolated_env(home)
    models = finetuned(args.cache, args.steps, args.lr, seed=0)
    tuned = {}
    for dtype in DTYPES:
        print(f"benchmarking the fine-tune in {dtype} ({args.repeat} repeats)", file=sys.stderr)
        tuned[dtype] = bench_finetune(dtype, models[f"base-{dtype}"], models[f"tuned-{dtype}"], work, env, args.repeat)
    edited = data / "sparse.safetensors"
    sizes = write_sparse_edit(models["base-fp32"], edited, SPARSE_TENSORS, seed=1)
    print(f"benchmarking the 1% edit ({args.repeat} repeats)", file=sys.stderr)
    sparse = bench_sparse(models["base-fp32"], edited, sizes, work, env, args.repeat)
    chain_paths = write_chain(models["base-fp32"], models["tuned-fp32"], data, args.versions, seed=2)
    print(f"benchmarking a chain of {args.versions} versions ({args.repeat} repeats)", file=sys.stderr)
    chain = bench_chain(chain_paths, work, env, args.repeat)
    large = None
    if not args.no_large:
        print(f"benchmarking the fine-tune of a generated 1 GiB model ({args.repeat} repeats)", file=sys.stderr)
        large_base, large_tuned = write_large_pair(data)
        large = bench_finetune("fp32 1 GiB", large_base, large_tuned, work, env, args.repeat)
    return Results(args.steps, args.lr, DEFAULT_DEPTH, tuned, sparse, chain, large)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables and the targets; exit non-zero only when something failed to run."""
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="git-theta-bench-updates-", dir=args.workdir))
    try:
        results = run(args, work)
        targets = check_targets(results)
        print_report(results, targets)
        if args.json:
            record = {
                "date": date.today().isoformat(),
                "versions": versions(isolated_env(work / "home")),
                "settings": {"steps": args.steps, "lr": args.lr, "repeat": args.repeat, DEPTH_KEY: DEFAULT_DEPTH},
                "results": asdict(results),
                "targets": targets,
            }
            args.json.write_text(json.dumps(record, indent=2) + "\n")
    except BenchError as exc:
        print(f"bench_updates: error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
