#!/usr/bin/env python3
"""Every row of the performance table of issue 14, in one run: git-theta against Git LFS (or a user's numpy script).

Each workload runs in new repositories for both tools in the same run (``bench_core.py``'s setup: isolated HOME,
``GIT_CONFIG_NOSYSTEM=1``, git-lfs's hooks in both), alternating which tool goes first; each row reports the best
and the median over the repeats, their ratio, the filter's CPU time (user + sys) and peak memory, the target and
whether it holds. The storage and decode-speed rows against ZipNN come from ``bench_codec.py`` when it is there.

Usage: python benchmarks/bench_all.py [--quick] [--repeat N] [--json FILE] [--workdir DIR] [--scaling 0.3 1 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core as core  # noqa: E402  (the benchmarks are scripts beside each other, not a package)

HERE = Path(__file__).resolve().parent
GIB = 1 << 30
#: The synthetic fine-tune: every F32 tensor but the pooler's moves by normal noise of this standard deviation
#: (AdamW at lr 2e-5 moves a weight by about 1e-3 in 100 steps); the pooler stays, as a mean-pooling loss leaves it.
FINETUNE_NOISE = 5e-4


# --------------------------------------------------------------------------------------------------- workloads


def finetuned_minilm(data: Path, finetune_dir: Path | None) -> core.Model:
    """MiniLM and a version with every trained tensor changed: a real fine-tune from ``finetune.py`` if given."""
    if finetune_dir is not None:
        base, tuned = finetune_dir / "base-fp32.safetensors", finetune_dir / "tuned-fp32.safetensors"
        label = "MiniLM fp32, fine-tuned by finetune.py"
    else:
        base = core.minilm_model(data).original
        tuned = data / "minilm.finetuned.safetensors"
        write_finetuned(base, tuned)
        label = f"MiniLM fp32, every trained tensor + N(0, {FINETUNE_NOISE:g})"
    header, _ = core.read_header(base)
    changed = sum(info["dtype"] == "F32" and not name.startswith("pooler.") for name, info in header.items())
    return core.Model("finetune", label, base, tuned, len(header), f"{changed} tensors", tuned.stat().st_size)


def write_finetuned(source: Path, dest: Path, seed: int = 4) -> None:
    """Copy ``source`` with normal noise added to every F32 tensor except the pooler's (the header unchanged)."""
    header, data_start = core.read_header(source)
    shutil.copyfile(source, dest)
    rng = np.random.default_rng(seed)
    with open(dest, "r+b") as stream:
        for name, info in header.items():
            if info["dtype"] != "F32" or name.startswith("pooler."):
                continue
            begin, end = info["data_offsets"]
            stream.seek(data_start + begin)
            values = np.frombuffer(stream.read(end - begin), dtype="<f4")
            noise = rng.standard_normal(len(values), dtype=np.float32) * np.float32(FINETUNE_NOISE)
            stream.seek(data_start + begin)
            stream.write((values + noise).astype("<f4").tobytes())


def kilobyte_model(data: Path) -> core.Model:
    """A checkpoint of about 1 KB (a 16x12 weight, a bias, a scale): the fixed cost of one file."""
    path = data / "small.safetensors"
    shapes = {"layer.weight": (16, 12), "layer.bias": (16,), "norm.weight": (12,)}
    rng = np.random.default_rng(5)
    core.write_safetensors(path, shapes, lambda index: rng.standard_normal(list(shapes.values())[index]))
    return core.prepare_model("kilobyte", f"{path.stat().st_size} B checkpoint, 3 tensors", path, data)


def big_of(data: Path, gib: float) -> core.Model:
    """The generated model of ``bench_core.py`` at about ``gib`` GiB (64 MiB tensors; 0.3 GiB is 5 of them)."""
    count = max(1, round(gib * 16))
    sub = data / f"big-{count}"
    sub.mkdir(exist_ok=True)
    return core.big_model(sub, count=count)


def one_tensor_model(data: Path) -> core.Model:
    """One 64 MiB F32 tensor (4096 x 4096), and a version with every element changed (a fine-tune's delta)."""
    path, tuned = data / "one.safetensors", data / "one.tuned.safetensors"
    rng = np.random.default_rng(6)
    core.write_safetensors(path, {"w": (4096, 4096)}, lambda _: rng.standard_normal((4096, 4096)) * 0.02)
    shutil.copyfile(path, tuned)
    write_finetuned(path, tuned, seed=7)
    return core.Model("one", "one 64 MiB F32 tensor", path, tuned, 1, "w", tuned.stat().st_size)


# ------------------------------------------------------------------------------------------------ measurement


@dataclass
class Figure:
    """Best and median of one measurement over the repeats (seconds or MiB), with every value."""

    best: float
    median: float
    values: list[float]
    cpu: float | None = None
    peak_mib: float | None = None

    @classmethod
    def of(cls, values: list[float], cpu: list[float | None] | None = None, peaks: list[float] | None = None) -> Figure:
        """Summarize; CPU is that of the best run, the peak the highest seen."""
        best = min(range(len(values)), key=values.__getitem__)
        return cls(
            values[best],
            statistics.median(values),
            [round(v, 3) for v in values],
            cpu[best] if cpu else None,
            max(peaks) if peaks else None,
        )


def step_figure(result: core.ModelResult, step: str, tool: str) -> Figure:
    """A step of ``bench_core.bench_model`` as a Figure."""
    summary = result.steps[step][tool]
    return Figure(summary.seconds, summary.median_seconds, summary.all_seconds, summary.filter_cpu, summary.peak_mib)


def run_steps(
    model: core.Model, work: Path, env: dict[str, str], repeat: int, steps: tuple[str, ...]
) -> dict[str, dict[str, Figure]]:
    """``steps`` (of add, re-add, checkout) in new repositories per repeat for both tools; Figures by step and tool."""
    runs: dict[str, dict[str, list[core.Run]]] = {step: {tool: [] for tool in core.TOOLS} for step in steps}
    for index in range(repeat):
        root = work / f"{model.key}-{index}"
        order = core.TOOLS if index % 2 == 0 else core.TOOLS[::-1]
        usage = {tool: root / f"{tool}.usage" for tool in core.TOOLS}
        for tool in core.TOOLS:
            core.init_repo(root / tool, tool, env, usage[tool])
        for step in steps:
            for tool in order:
                runs[step][tool].append(core.run_step(step, model, root / tool, env, usage[tool]))
        expected = core.file_sha256(model.modified if "re-add" in steps else model.original)
        for tool in core.TOOLS:
            if core.file_sha256(root / tool / core.FILE_NAME) != expected:
                raise core.BenchError(f"{tool}: checkout did not give back the committed file byte for byte")
        shutil.rmtree(root)
        timings = ", ".join(f"{s} {runs[s]['theta'][-1].seconds:.2f}/{runs[s]['lfs'][-1].seconds:.2f}" for s in steps)
        print(f"  {model.key} repeat {index + 1}/{repeat} (theta/lfs s): {timings}", file=sys.stderr)
    return {step: {tool: _figure(runs[step][tool]) for tool in core.TOOLS} for step in steps}


def _figure(runs: list[core.Run]) -> Figure:
    peaks = [run.peak_kib / 1024 for run in runs if run.peak_kib is not None]
    return Figure.of([run.seconds for run in runs], [run.filter_cpu for run in runs], peaks)


def timed_command(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float | None, float | None]:
    """Wall seconds, CPU seconds (user + sys) and peak RSS (MiB) of one command (the last two via /usr/bin/time)."""
    usage = cwd / ".bench-usage"
    prefix = [str(core.TIME_BIN), "-f", core.TIME_FORMAT, "-o", str(usage)] if core.TIME_BIN.exists() else []
    os.sync()
    start = time.perf_counter()
    result = subprocess.run(prefix + command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise core.BenchError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.decode()}")
    if not prefix:
        return seconds, None, None
    peak, cpu = core.read_usage(usage)
    usage.unlink()
    return seconds, cpu, peak / 1024 if peak is not None else None


def committed_pair(model: core.Model, root: Path, env: dict[str, str]) -> Path:
    """A git-theta repository with ``model.original`` then ``model.modified`` committed (untimed)."""
    repo = root / f"diff-{model.key}"
    core.init_repo(repo, "theta", env, root / "diff.usage")
    for source in (model.original, model.modified):
        core.place_file(source, repo)
        core.git(repo, env, "add", core.FILE_NAME)
        core.git(repo, env, "commit", "-q", "-m", source.name)
    return repo


def bench_diff(model: core.Model, root: Path, env: dict[str, str], repeat: int) -> dict[str, Figure]:
    """``git theta diff HEAD~1 HEAD`` against ``user_diff.py`` on the two files, alternating, ``repeat`` times."""
    repo = committed_pair(model, root, env)
    theta = [str(Path(sys.executable).parent / "git-theta"), "diff", "HEAD~1", "HEAD"]
    user = [sys.executable, str(HERE / "user_diff.py"), str(model.original), str(model.modified)]
    runs: dict[str, list[tuple[float, float | None, float | None]]] = {"theta": [], "user": []}
    for index in range(repeat):
        order = ("theta", "user") if index % 2 == 0 else ("user", "theta")
        for who in order:
            runs[who].append(timed_command(theta if who == "theta" else user, repo, env))
    shutil.rmtree(repo)
    figures = {}
    for who, got in runs.items():
        peaks = [peak for _, _, peak in got if peak is not None]
        figures[who] = Figure.of([s for s, _, _ in got], [cpu for _, cpu, _ in got], peaks)
    print(
        f"  diff {model.key}: theta {figures['theta'].values} s, user script {figures['user'].values} s",
        file=sys.stderr,
    )
    return figures


# ------------------------------------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One row of the table: git-theta's figure, the reference's (Git LFS or the user's script), the target."""

    workload: str
    unit: str
    theta: Figure
    reference: Figure | None
    target: str
    limit: float
    #: "ratio": theta / reference <= limit; "value": theta's best <= limit (in ``unit``)
    kind: str = "ratio"

    @property
    def measured(self) -> float:
        """The ratio of the best figures, or theta's best figure."""
        if self.kind == "ratio" and self.reference is not None:
            return self.theta.best / self.reference.best
        return self.theta.best

    @property
    def median_ratio(self) -> float | None:
        """The ratio of the medians."""
        return self.theta.median / self.reference.median if self.kind == "ratio" and self.reference else None

    @property
    def holds(self) -> bool:
        """Whether the target holds (on the best figures)."""
        return self.measured <= self.limit


def ratio_row(name: str, figures: dict[str, Figure], limit: float) -> Row:
    """A git-theta / Git LFS row."""
    return Row(name, "s", figures["theta"], figures["lfs"], f"<= {limit:g}x LFS", limit)


def core_rows(results: dict[str, dict[str, dict[str, Figure]]]) -> list[Row]:
    """The rows of the workloads run against Git LFS, for those that ran."""
    specs = [
        ("big", "add", "first `git add`, 1 GiB of 64 MiB fp32 tensors", 0.40),
        ("big", "checkout", "checkout, 1 GiB of 64 MiB fp32 tensors", 0.9),
        ("minilm", "re-add", "`git add` after one small tensor changed, MiniLM", 0.7),
        ("finetune", "re-add", "`git add` of a whole fine-tune (every tensor changed), MiniLM fp32", 1.0),
        ("minilm", "checkout", "checkout, MiniLM", 1.2),
        ("kilobyte", "add", "1 KB checkpoint: add", 2.5),
        ("kilobyte", "checkout", "1 KB checkpoint: checkout", 2.0),
        ("tiny", "add", "2000 tensors of 64 floats in one file: add", 5.0),
        ("tiny", "checkout", "2000 tensors of 64 floats in one file: checkout", 3.0),
    ]
    return [ratio_row(name, results[key][step], limit) for key, step, name, limit in specs if key in results]


def diff_rows(whole: dict[str, Figure] | None, one: dict[str, Figure] | None) -> list[Row]:
    """The diff rows: time against the user's numpy script, and peak memory on one 64 MiB tensor."""
    rows = []
    if whole is not None:
        name = "`git theta diff` of a whole MiniLM fine-tune (vs benchmarks/user_diff.py)"
        rows.append(Row(name, "s", whole["theta"], whole["user"], "< 1.0x the user's numpy script", 1.0))
    if one is not None and one["theta"].peak_mib is not None:
        peak = one["theta"]
        memory = Figure(peak.peak_mib or 0.0, peak.peak_mib or 0.0, [peak.peak_mib or 0.0])
        user = one["user"]
        reference = Figure(user.peak_mib or 0.0, user.peak_mib or 0.0, [user.peak_mib or 0.0])
        name = "diff of one changed 64 MiB tensor, peak memory (reference: user_diff.py)"
        rows.append(Row(name, "MiB", memory, reference, "<= 2x the tensor + 64 MiB (192 MiB)", 192.0, "value"))
    return rows


def scaling_rows(scaling: dict[str, dict[str, dict[str, Figure]]]) -> list[Row]:
    """First add and checkout at each size, against Git LFS (targets of the 1 GiB rows)."""
    rows = []
    for size, figures in scaling.items():
        rows.append(ratio_row(f"scaling {size} GiB: first `git add`", figures["add"], 0.40))
        rows.append(ratio_row(f"scaling {size} GiB: checkout", figures["checkout"], 0.9))
    return rows


def _cell(figure: Figure | None, unit: str) -> str:
    if figure is None:
        return "n/a"
    text = f"{figure.best:.2f} / {figure.median:.2f}" if unit == "s" else f"{figure.best:.0f}"
    if figure.cpu is not None:
        text += f" (CPU {figure.cpu:.2f})"
    return text


def print_table(rows: list[Row], notes: list[str]) -> None:
    """The markdown table of every row."""
    print("| workload | git-theta best / median | reference best / median | ratio best (median) | target | holds |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for row in rows:
        median = f" ({row.median_ratio:.2f}x)" if row.median_ratio is not None else ""
        measured = f"{row.measured:.2f}x{median}" if row.kind == "ratio" else f"{row.measured:.0f} {row.unit}"
        cells = (row.workload, _cell(row.theta, row.unit), _cell(row.reference, row.unit), measured, row.target)
        print("| " + " | ".join(cells) + f" | {'yes' if row.holds else 'NO'} |")
    print(
        "\nSeconds: wall clock of the git command (or of the diff), best and median over the repeats. CPU: user + sys "
        "seconds of the filter process git started (with its children) in the best run; for diffs, of the command."
    )
    for note in notes:
        print(f"Note: {note}")


# ------------------------------------------------------------------------------------------------------- codec


def run_codec(quick: bool, work: Path) -> tuple[dict | None, str]:
    """Run ``bench_codec.py`` (storage and decode speed against ZipNN) if it exists; its JSON and a note."""
    script = HERE / "bench_codec.py"
    if not script.exists():
        return None, "benchmarks/bench_codec.py is not there: the storage and decode-speed rows (ZipNN) were skipped"
    usage = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True).stdout
    command = [sys.executable, str(script)]
    output = work / "codec.json"
    if "--json" in usage:
        command += ["--json", str(output)]
    if quick and "--quick" in usage:
        command.append("--quick")
    result = subprocess.run(command, capture_output=True, text=True)
    print(result.stdout)
    if result.returncode != 0:
        return None, f"bench_codec.py exited {result.returncode}: {result.stderr.strip()[-500:]}"
    record = json.loads(output.read_text()) if output.exists() else None
    return record, "storage and decode-speed rows: printed above by benchmarks/bench_codec.py"


# ------------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="no 1 GiB model and no scaling table; one repeat")
    parser.add_argument("--repeat", type=int, help="repeats per workload (default 3; 1 with --quick)")
    parser.add_argument("--scaling", type=float, nargs="*", help="sizes in GiB of the scaling table (0.3 1 3)")
    parser.add_argument("--finetune-dir", type=Path, help="a finetune.py output dir (base-fp32, tuned-fp32)")
    parser.add_argument("--no-codec", action="store_true", help="do not run bench_codec.py")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--workdir", type=Path, help="parent directory for the temporary data (default: $TMPDIR)")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, data: Path, work: Path, env: dict[str, str]) -> dict:
    """Run every workload; return the figures by workload."""
    repeat = args.repeat or (1 if args.quick else 3)
    builders: dict[str, Callable[[], core.Model]] = {
        "minilm": lambda: core.minilm_model(data),
        "finetune": lambda: finetuned_minilm(data, args.finetune_dir),
        "kilobyte": lambda: kilobyte_model(data),
        "tiny": lambda: core.tiny_model(data),
    }
    if not args.quick:
        builders = {"big": lambda: core.big_model(data), **builders}
    core_results = {}
    for key, build in builders.items():
        model = build()
        print(f"benchmarking {model.label} ({repeat} repeats)", file=sys.stderr)
        core_results[key] = run_steps(model, work, env, repeat, ("add", "re-add", "checkout"))
    finetune = finetuned_minilm(data, args.finetune_dir)
    whole = bench_diff(finetune, work, env, max(repeat, 3))
    one = bench_diff(one_tensor_model(data), work, env, max(repeat, 2))
    sizes = args.scaling if args.scaling is not None else ([] if args.quick else [0.3, 1.0, 3.0])
    scaling = {}
    for size in sizes:
        if size == 1.0 and "big" in core_results:
            scaling["1"] = {step: core_results["big"][step] for step in ("add", "checkout")}
            continue
        model = big_of(data, size)
        print(f"benchmarking scaling {size:g} GiB ({repeat} repeats)", file=sys.stderr)
        scaling[f"{size:g}"] = run_steps(model, work, env, repeat, ("add", "checkout"))
        model.original.unlink()
        model.modified.unlink()
    return {"repeat": repeat, "core": core_results, "diff": {"whole": whole, "one": one}, "scaling": scaling}


def main(argv: list[str] | None = None) -> int:
    """Measure every row, print the table and the targets, write JSON."""
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="git-theta-bench-all-", dir=args.workdir))
    try:
        home, data = work / "home", work / "data"
        home.mkdir()
        data.mkdir()
        env = core.isolated_env(home)
        figures = measure(args, data, work, env)
        rows = core_rows(figures["core"]) + diff_rows(**figures["diff"]) + scaling_rows(figures["scaling"])
        codec, note = (None, "bench_codec.py not run (--no-codec)") if args.no_codec else run_codec(args.quick, work)
        load = os.getloadavg()
        notes = [
            note,
            f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs",
        ]
        print_table(rows, notes)
        if args.json:
            record = {
                "versions": core.versions(env),
                "quick": args.quick,
                "figures": json.loads(json.dumps(figures, default=asdict)),
                "rows": [{**asdict(row), "measured": row.measured, "holds": row.holds} for row in rows],
                "codec": codec,
                "notes": notes,
            }
            args.json.write_text(json.dumps(record, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
