#!/usr/bin/env python3
"""Benchmark model-aware merges: peak memory and time of git-theta's merge driver on a 1 GiB checkpoint.

In one fresh repository it commits a generated 1 GiB safetensors model (16 F32 tensors of 64 MiB, as the ``big``
model of ``bench_core.py``) on ``main``, then three branches ``a``, ``b`` and ``c`` that each add a different small
random change to every tensor. For each strategy it puts a branch ``work`` at ``a`` and runs ``git merge b`` with
``GIT_THETA_MERGE_STRATEGY`` set, so all 16 tensors are merged by the strategy. ``merge.theta.driver`` is wrapped in
``/usr/bin/time``, which gives the driver process's peak RSS and wall time. Last, ``git theta merge --strategy
average b c`` merges three versions (a, b, c) at once, under ``/usr/bin/time`` too. The average of the two-way merge
is checked against numpy on two tensors.

Usage: python benchmarks/bench_merge.py [--strategies NAME...] [--no-nway] [--json FILE] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import (  # noqa: E402 - a sibling script, not a package
    MIB,
    TIME_BIN,
    BenchError,
    git,
    isolated_env,
    read_header,
    versions,
    write_safetensors,
)

FILE_NAME = "model.safetensors"
#: GNU time output: peak RSS in KiB, wall seconds, user and system CPU seconds (of the process and its children).
TIME_FORMAT = "%M %e %U %S"
#: The issue's bound for the 1 GiB model (bench_core.py): filter memory under 342 MiB.
LIMIT_MIB = 342
STRATEGIES = (
    "ours",
    "average",
    "task-arithmetic",
    "ties",
    "dare",
    "slerp",
    "breadcrumbs",
    "breadcrumbs-ties",
    "model-stock",
)
BRANCHES = ("a", "b", "c")
#: Scale of the generated weights and of each branch's change to them.
SCALE, CHANGE = 0.02, 0.002
#: Tensors whose merged values are checked against numpy (first and last).
CHECKED = (0, -1)


@dataclass
class Result:
    """One measured merge."""

    merge: str
    strategy: str
    peak_mib: float
    process_seconds: float
    cpu_seconds: float
    git_seconds: float
    check: str

    @property
    def ok(self) -> bool:
        """The peak is under the bound."""
        return self.peak_mib < LIMIT_MIB


# ------------------------------------------------------------------------------------------------------ models


def base_values(index: int, side: int) -> np.ndarray:
    """Tensor ``index`` of the common ancestor (random normal, as bench_core's big model), reproducible by index."""
    values = np.random.default_rng([1, index]).standard_normal((side, side), dtype=np.float32)
    values *= np.float32(SCALE)
    return values


def branch_values(branch: int, index: int, side: int) -> np.ndarray:
    """Tensor ``index`` on branch number ``branch``: the ancestor plus a small change of its own, every element."""
    change = np.random.default_rng([2, branch, index]).standard_normal((side, side), dtype=np.float32)
    change *= np.float32(CHANGE)
    change += base_values(index, side)
    return change


def write_model(path: Path, count: int, side: int, branch: int | None) -> None:
    """Write the ancestor (``branch`` None) or one branch's model, one tensor at a time."""
    shapes = {f"layers.{i:02d}.weight": (side, side) for i in range(count)}
    if branch is None:
        write_safetensors(path, shapes, lambda index: base_values(index, side))
    else:
        write_safetensors(path, shapes, lambda index: branch_values(branch, index, side))


def read_tensor(path: Path, name: str) -> np.ndarray:
    """One F32 tensor of a safetensors file, read by its offsets."""
    header, data_start = read_header(path)
    begin, end = header[name]["data_offsets"]
    with open(path, "rb") as stream:
        stream.seek(data_start + begin)
        return np.frombuffer(stream.read(end - begin), dtype="<f4")


def check_average(path: Path, count: int, side: int, branches: tuple[int, ...]) -> str:
    """Compare the merged file's tensors with the documented average: float64 mean, rounded once to float32."""
    for index in CHECKED:
        index %= count
        total = np.zeros(side * side, np.float64)
        for branch in branches:
            total += branch_values(branch, index, side).reshape(-1)
        expected = (total / len(branches)).astype(np.float32)
        merged = read_tensor(path, f"layers.{index:02d}.weight")
        if not np.array_equal(merged, expected):
            wrong = int(np.count_nonzero(merged != expected))
            raise BenchError(f"average: tensor {index} differs from numpy in {wrong} of {expected.size} elements")
    return f"average == numpy on {len(CHECKED)} tensors"


# ------------------------------------------------------------------------------------------------- repository


def setup_repo(repo: Path, env: dict[str, str], skip: dict[str, str], usage: Path, count: int, side: int) -> None:
    """Commit the ancestor on main and one changed model per branch; wrap the merge driver in /usr/bin/time."""
    repo.mkdir(parents=True)
    git(repo, env, "init", "-q", "-b", "main")
    git(repo, env, "lfs", "install", "--local")
    git(repo, env, "theta", "install", "--local")
    git(repo, env, "theta", "track", FILE_NAME)
    command = git(repo, env, "config", "--local", "--get", "merge.theta.driver").stdout.decode().strip()
    wrapped = shlex.join([str(TIME_BIN), "-f", TIME_FORMAT, "-o", str(usage)]) + " " + command
    git(repo, env, "config", "--local", "merge.theta.driver", wrapped)
    git(repo, env, "add", ".gitattributes")
    git(repo, env, "commit", "-q", "-m", "track the checkpoint")
    started = time.perf_counter()
    write_model(repo / FILE_NAME, count, side, None)
    git(repo, env, "add", FILE_NAME)
    git(repo, env, "commit", "-q", "-m", "ancestor")
    for number, branch in enumerate(BRANCHES):
        # Checkouts skip the smudge: the working file is overwritten right away.
        git(repo, skip, "checkout", "-q", "-b", branch, "main")
        write_model(repo / FILE_NAME, count, side, number)
        git(repo, env, "add", FILE_NAME)
        git(repo, env, "commit", "-q", "-m", f"change every tensor ({branch})")
    print(
        f"  committed the ancestor and {len(BRANCHES)} branches in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )


def lfs_objects(repo: Path) -> set[Path]:
    """The files of the repository's object store."""
    root = repo / ".git" / "lfs" / "objects"
    return {path for path in root.rglob("*") if path.is_file()}


def read_usage(usage: Path) -> tuple[float, float, float]:
    """Peak MiB, wall seconds and CPU seconds from the GNU time output (its last line)."""
    if not usage.exists():
        raise BenchError("the merge driver did not run (no /usr/bin/time output)")
    fields = usage.read_text().strip().splitlines()[-1].split()
    return int(fields[0]) / 1024, float(fields[1]), float(fields[2]) + float(fields[3])


def merge_two(repo: Path, env: dict, skip: dict, usage: Path, strategy: str, count: int, side: int) -> Result:
    """Put branch ``work`` at ``a``, time ``git merge b`` with ``strategy`` (the smudge writes the merged file)."""
    git(repo, skip, "checkout", "-q", "-f", "-B", "work", "a")
    before = lfs_objects(repo)
    usage.unlink(missing_ok=True)
    started = time.perf_counter()
    result = git(repo, {**env, "GIT_THETA_MERGE_STRATEGY": strategy}, "merge", "--no-edit", "-q", "b")
    seconds = time.perf_counter() - started
    if f"merged {count} tensor(s) with {strategy}".encode() not in result.stderr:
        raise BenchError(f"{strategy}: the driver did not merge every tensor:\n{result.stderr.decode()}")
    peak, process_seconds, cpu = read_usage(usage)
    check = check_average(repo / FILE_NAME, count, side, (0, 1)) if strategy == "average" else ""
    for path in lfs_objects(repo) - before:  # the merged tensors: free the disk before the next merge
        path.unlink()
    return Result("two-way (git merge)", strategy, peak, process_seconds, cpu, seconds, check)


def merge_nway(repo: Path, env: dict, skip: dict, usage: Path, count: int, side: int) -> Result:
    """Put branch ``work`` at ``a``, time ``git theta merge --strategy average b c`` (one commit, three parents)."""
    git(repo, skip, "checkout", "-q", "-f", "-B", "work", "a")
    usage.unlink(missing_ok=True)
    command = [str(TIME_BIN), "-f", TIME_FORMAT, "-o", str(usage), "git-theta", "merge", "-s", "average", "b", "c"]
    # The checkout of the result skips the smudge: git holds a smudged file whole in its own memory, which would
    # be counted here (the peak covers every child), and the filter's memory is bench_core.py's.
    started = time.perf_counter()
    result = subprocess.run(command, cwd=repo, env=skip, capture_output=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise BenchError(f"git theta merge exited {result.returncode}:\n{result.stderr.decode(errors='replace')}")
    peak, process_seconds, cpu = read_usage(usage)
    (repo / FILE_NAME).unlink()
    git(repo, env, "checkout", "--", FILE_NAME)
    check = check_average(repo / FILE_NAME, count, side, (0, 1, 2))
    return Result("3 branches (git theta merge)", "average", peak, process_seconds, cpu, seconds, check)


# ---------------------------------------------------------------------------------------------------- output


def print_table(results: list[Result], count: int, side: int) -> None:
    """A markdown table of the merges, then the bound."""
    size = count * side * side * 4 / MIB
    print(f"\nModel: {count} F32 tensors of {side * side * 4 / MIB:g} MiB ({size:g} MiB); every tensor merged.\n")
    print("| merge | strategy | peak MiB | merge process s | CPU s | git command s | < 342 MiB | check |")
    print("|---|---|---:|---:|---:|---:|---|---|")
    for item in results:
        print(
            f"| {item.merge} | {item.strategy} | {item.peak_mib:.0f} | {item.process_seconds:.1f} | "
            f"{item.cpu_seconds:.1f} | {item.git_seconds:.1f} | {'PASS' if item.ok else 'FAIL'} | {item.check} |"
        )
    print(
        "\nPeak MiB: max RSS of the merge driver git started; for git theta merge, of git-theta and its children "
        "(its checkout skips the smudge). Git command s: the whole command; for git merge it includes the "
        "smudge of the merged file."
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), help="two-way strategies to run")
    parser.add_argument("--no-nway", action="store_true", help="skip the three-way git theta merge")
    parser.add_argument("--count", type=int, default=16, help="tensors in the model (16)")
    parser.add_argument("--side", type=int, default=4096, help="each tensor is side x side F32 (4096: 64 MiB)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--workdir", type=Path, help="parent directory for the temporary repository ($TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the repository")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build the repository, run every merge, print the table."""
    args = parse_args(argv)
    if not TIME_BIN.exists():
        raise BenchError(f"{TIME_BIN} (GNU time) is needed to measure the merge driver")
    work = Path(tempfile.mkdtemp(prefix="git-theta-bench-merge-", dir=args.workdir))
    try:
        home, repo, usage = work / "home", work / "repo", work / "driver.usage"
        home.mkdir()
        env = isolated_env(home)
        skip = {**env, "GIT_LFS_SKIP_SMUDGE": "1"}
        setup_repo(repo, env, skip, usage, args.count, args.side)
        results = []
        for strategy in args.strategies:
            results.append(merge_two(repo, env, skip, usage, strategy, args.count, args.side))
            print(f"  {strategy}: {results[-1].peak_mib:.0f} MiB, {results[-1].git_seconds:.1f} s", file=sys.stderr)
        if not args.no_nway:
            results.append(merge_nway(repo, env, skip, usage, args.count, args.side))
            print(f"  n-way average: {results[-1].peak_mib:.0f} MiB", file=sys.stderr)
        print_table(results, args.count, args.side)
        if args.json:
            record = {
                "versions": versions(env),
                "model": {"tensors": args.count, "shape": [args.side, args.side], "dtype": "F32"},
                "limit_mib": LIMIT_MIB,
                "results": [{**asdict(item), "pass": item.ok} for item in results],
            }
            args.json.write_text(json.dumps(record, indent=2) + "\n")
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
