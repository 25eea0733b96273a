"""Model-aware merges with real git: merge, cherry-pick, revert, rebase, git theta merge (docs/merges.md)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import numpy as np

from tests.helpers import git, save_safetensors, theta
from tests.unit.merges.test_strategies import ties_reference

F = "model.safetensors"


def load(repo: Path, name: str = F) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(repo / name))


def commit(repo: Path, tensors: dict[str, np.ndarray], message: str) -> None:
    save_safetensors(repo / F, tensors)
    git("add", F, cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


def model(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "layer.weight": rng.standard_normal((16, 8)).astype(np.float32),
        "layer.bias": rng.standard_normal(8).astype(np.float32),
        "steps": np.array([seed], np.int64),
    }


def branches(repo: Path) -> tuple[dict, dict, dict]:
    """main and side both change weight and bias (differently) from a common base; side also adds a tensor."""
    base = model(0)
    commit(repo, base, "base")
    git("checkout", "-q", "-b", "side", cwd=repo)
    theirs = {**base, "layer.weight": base["layer.weight"] + 2, "layer.bias": base["layer.bias"] * 3}
    theirs["extra"] = np.ones(4, np.float32)
    commit(repo, theirs, "side")
    git("checkout", "-q", "main", cwd=repo)
    ours = {**base, "layer.weight": base["layer.weight"] - 1, "layer.bias": base["layer.bias"] + 1}
    commit(repo, ours, "main")
    return base, ours, theirs


def transfer(base: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """task-arithmetic with lambda 1, as computed: float64, then rounded to float32 once."""
    base64 = base.astype(np.float64)
    return (base64 + ((ours - base64) + (theirs - base64))).astype(np.float32)


def assert_clean(repo: Path) -> None:
    assert git("status", "--porcelain", cwd=repo).stdout == b""


def test_merge_with_strategy_from_the_environment(repo: Path) -> None:
    base, ours, theirs = branches(repo)
    result = git("merge", "--no-edit", "side", cwd=repo, env={"GIT_THETA_MERGE_STRATEGY": "average"})
    assert b"merged 2 tensor(s) with average" in result.stderr
    merged = load(repo)
    np.testing.assert_allclose(merged["layer.weight"], (ours["layer.weight"] + theirs["layer.weight"]) / 2)
    np.testing.assert_allclose(merged["layer.bias"], (ours["layer.bias"] + theirs["layer.bias"]) / 2)
    assert np.array_equal(merged["extra"], theirs["extra"]) and np.array_equal(merged["steps"], base["steps"])
    assert_clean(repo)
    assert len(git("rev-list", "--parents", "-n1", "HEAD", cwd=repo).stdout.split()) == 3


def test_merge_with_strategy_from_git_config_and_per_tensor_patterns(repo: Path) -> None:
    rng = np.random.default_rng(9)
    base = model(0)
    commit(repo, base, "base")
    git("checkout", "-q", "-b", "side", cwd=repo)
    theirs = {k: v + rng.standard_normal(v.shape).astype(v.dtype) for k, v in base.items()}
    commit(repo, theirs, "side")
    git("checkout", "-q", "main", cwd=repo)
    ours = {k: v + rng.standard_normal(v.shape).astype(v.dtype) for k, v in base.items()}
    commit(repo, ours, "main")
    git("config", "theta.mergeStrategy", "ties:density=0.5", cwd=repo)
    git("config", "--add", "theta.mergePattern", "*.bias=theirs", cwd=repo)
    git("config", "--add", "theta.mergePattern", "steps=ours", cwd=repo)
    git("merge", "--no-edit", "side", cwd=repo)
    merged = load(repo)
    assert np.array_equal(merged["layer.bias"], theirs["layer.bias"])
    assert np.array_equal(merged["steps"], ours["steps"])
    sides = [ours["layer.weight"].astype(np.float64), theirs["layer.weight"].astype(np.float64)]
    expected = ties_reference(base["layer.weight"].astype(np.float64), sides, 0.5, 1.0, [1, 1])
    np.testing.assert_allclose(merged["layer.weight"], expected, rtol=1e-5, atol=1e-6)
    assert_clean(repo)


def test_conflict_without_a_terminal_then_resolve_in_place(repo: Path) -> None:
    base, ours, theirs = branches(repo)
    result = git("merge", "--no-edit", "side", cwd=repo, check=False)
    assert result.returncode != 0
    messages = [line for line in result.stderr.decode().splitlines() if line.startswith("git-theta:")]
    assert len(messages) == 1 and "git theta merge --strategy" in messages[0]
    assert np.array_equal(load(repo)["layer.weight"], ours["layer.weight"])  # the working file is usable: ours
    theta("merge", "--strategy", "task-arithmetic", "--pattern", "*.bias=ours", cwd=repo)
    git("commit", "-q", "--no-edit", cwd=repo)
    merged = load(repo)
    expected = transfer(base["layer.weight"], ours["layer.weight"], theirs["layer.weight"])
    assert np.array_equal(merged["layer.weight"], expected)
    assert np.array_equal(merged["layer.bias"], ours["layer.bias"]) and "extra" in merged
    assert_clean(repo)


def test_manual_merge_writes_the_three_versions(repo: Path) -> None:
    base, ours, theirs = branches(repo)
    result = git("merge", "--no-edit", "side", cwd=repo, check=False, env={"GIT_THETA_MANUAL_MERGE": "1"})
    assert result.returncode != 0 and b"GIT_THETA_MANUAL_MERGE is set" in result.stderr
    for label, expected in (("base", base), ("ours", ours), ("theirs", theirs)):
        written = load(repo, f"model.{label}.safetensors")
        assert written.keys() == expected.keys()
        assert all(np.array_equal(written[k], expected[k]) for k in expected)


def merge_on_a_terminal(repo: Path, answer: bytes) -> tuple[int, bytes]:
    """``git merge side`` with a terminal for input and output; give ``answer`` to the first menu question."""
    master, slave = pty.openpty()
    process = subprocess.Popen(["git", "merge", "--no-edit", "side"], cwd=repo, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""
    answered = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"apply to all" in seen:
            os.write(master, answer)
            answered = True
        if process.poll() is not None and not ready:
            break
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(seen.decode(errors="replace")) from None
    os.close(master)
    assert answered, seen.decode(errors="replace")
    return process.returncode, seen


def test_interactive_menu_on_a_terminal(repo: Path) -> None:
    base, ours, theirs = branches(repo)
    returncode, seen = merge_on_a_terminal(repo, b"average!\n")
    assert returncode == 0, seen.decode(errors="replace")
    assert seen.count(b"changed on both sides") == 1  # "apply to all": asked once for two tensors
    np.testing.assert_allclose(load(repo)["layer.bias"], (ours["layer.bias"] + theirs["layer.bias"]) / 2)


def test_apply_to_all_holds_for_every_file_of_the_merge(repo: Path) -> None:
    """git runs one merge driver per file (shards of a model): one answer resolves them all, for this merge only."""
    shards = [f"model-0000{index}-of-00003.safetensors" for index in (1, 2, 3)]
    versions = {shard: {k: v for k, v in model(index).items() if k != "steps"} for index, shard in enumerate(shards)}

    def commit_shards(change: float, message: str) -> None:
        for shard, tensors in versions.items():
            save_safetensors(repo / shard, {name: value + change for name, value in tensors.items()})
        git("add", *shards, cwd=repo)
        git("commit", "-q", "-m", message, cwd=repo)

    commit_shards(0, "base")
    git("checkout", "-q", "-b", "side", cwd=repo)
    commit_shards(2, "side")
    git("checkout", "-q", "main", cwd=repo)
    commit_shards(-1, "main")
    returncode, seen = merge_on_a_terminal(repo, b"average!\n")
    assert returncode == 0, seen.decode(errors="replace")
    assert seen.count(b"changed on both sides") == 1  # asked once for three files of three conflicting tensors
    for shard, tensors in versions.items():
        merged = load(repo, shard)
        for name, value in tensors.items():
            mean = ((value - 1).astype(np.float64) + (value + 2)) / 2  # the average of the two sides, rounded once
            np.testing.assert_array_equal(merged[name], mean.astype(np.float32), err_msg=f"{shard}: {name}")
    assert_clean(repo)

    # The next merge asks again: the answer belonged to that git command.
    git("checkout", "-q", "side", cwd=repo)
    commit_shards(5, "side again")
    git("checkout", "-q", "main", cwd=repo)
    commit_shards(-3, "main again")
    returncode, seen = merge_on_a_terminal(repo, b"ours!\n")
    assert returncode == 0 and seen.count(b"changed on both sides") == 1, seen.decode(errors="replace")
    assert all(np.array_equal(load(repo, shard)["layer.bias"], versions[shard]["layer.bias"] - 3) for shard in shards)


def test_cherry_pick_transfers_a_fine_tune_to_a_new_base(repo: Path) -> None:
    old = model(1)
    commit(repo, old, "base model v1")
    finetuned = {**old, "layer.weight": old["layer.weight"] + 0.25, "layer.bias": old["layer.bias"] - 0.5}
    git("checkout", "-q", "-b", "finetune", cwd=repo)
    commit(repo, finetuned, "fine-tune v1")
    git("checkout", "-q", "main", cwd=repo)
    new = {**model(2), "steps": old["steps"]}
    commit(repo, new, "base model v2")
    git("cherry-pick", "finetune", cwd=repo, env={"GIT_THETA_MERGE_STRATEGY": "task-arithmetic"})
    moved = load(repo)
    for name in ("layer.weight", "layer.bias"):
        expected = transfer(old[name], new[name], finetuned[name])  # new base + (fine-tuned - old base)
        assert np.array_equal(moved[name], expected), name
    assert_clean(repo)


def test_revert_and_rebase_use_the_driver(repo: Path) -> None:
    env = {"GIT_THETA_MERGE_STRATEGY": "task-arithmetic"}
    base = model(3)
    commit(repo, base, "base")
    delta = {**base, "layer.weight": base["layer.weight"] + 1}
    commit(repo, delta, "add one")
    later = {**delta, "layer.weight": delta["layer.weight"] * 2}
    commit(repo, later, "double")
    git("revert", "--no-edit", "HEAD~1", cwd=repo, env=env)  # O = "add one", A = HEAD, B = "base"
    expected = transfer(delta["layer.weight"], later["layer.weight"], base["layer.weight"])
    assert np.array_equal(load(repo)["layer.weight"], expected)
    git("checkout", "-q", "-b", "topic", "HEAD~3", cwd=repo)
    topic = {**base, "layer.bias": base["layer.bias"] + 4, "layer.weight": base["layer.weight"] - 3}
    commit(repo, topic, "topic")
    git("rebase", "main", cwd=repo, env=env)  # replays "topic": O = base, A = main, B = topic
    rebased = load(repo)
    assert np.array_equal(rebased["layer.bias"], topic["layer.bias"])
    assert np.array_equal(rebased["layer.weight"], transfer(base["layer.weight"], expected, topic["layer.weight"]))
    assert_clean(repo)


def test_n_way_merge_records_all_parents(repo: Path) -> None:
    base = model(4)
    commit(repo, base, "base")
    heads = {}
    for i, name in enumerate(("a", "b", "c")):
        git("checkout", "-q", "-b", name, "main", cwd=repo)
        heads[name] = {**base, "layer.weight": base["layer.weight"] + (i + 1), "layer.bias": base["layer.bias"] * 0}
        commit(repo, heads[name], f"fine-tune {name}")
    git("checkout", "-q", "main", cwd=repo)
    theta("merge", "--strategy", "average", "--weight", "b=2", "--weight", "HEAD=0", "a", "b", "c", cwd=repo)
    parents = git("rev-list", "--parents", "-n1", "HEAD", cwd=repo).stdout.decode().split()[1:]
    expected_parents = [git("rev-parse", rev, cwd=repo).stdout.decode().strip() for rev in ("HEAD~1", "a", "b", "c")]
    assert parents == expected_parents
    merged = load(repo)
    np.testing.assert_allclose(merged["layer.weight"], base["layer.weight"] + (1 + 4 + 3) / 4, rtol=1e-6)
    assert np.array_equal(merged["layer.bias"], heads["a"]["layer.bias"])  # all sides changed it alike
    assert_clean(repo)
    # TIES over many fine-tunes, and an error that changes nothing.
    git("checkout", "-q", "-b", "d", "HEAD~1", cwd=repo)
    result = theta("merge", "--strategy", "nope", "a", "b", cwd=repo, check=False)
    assert result.returncode != 0 and b"unknown merges plugin 'nope'" in result.stderr
    theta("merge", "-s", "ties:density=1", "a", "b", "c", cwd=repo)
    np.testing.assert_allclose(load(repo)["layer.weight"], base["layer.weight"] + 2, rtol=1e-6)


def test_merge_driver_memory_tracks_the_largest_tensor(repo: Path) -> None:
    size = 4 << 20  # 16 MiB float32 tensors, 4 of them: 64 MiB per version
    rng = np.random.default_rng(5)
    base = {f"t{i}": rng.standard_normal(size, dtype=np.float32) for i in range(4)}
    commit(repo, base, "base")
    git("checkout", "-q", "-b", "side", cwd=repo)
    commit(repo, {k: v + 1 for k, v in base.items()}, "side")
    git("checkout", "-q", "main", cwd=repo)
    commit(repo, {k: v * 2 for k, v in base.items()}, "main")
    wrapper = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    git("config", "merge.theta.driver", f"python -c '{wrapper}' git-theta merge-driver %O %A %B %P > .rss", cwd=repo)
    git("merge", "--no-edit", "side", cwd=repo, env={"GIT_THETA_MERGE_STRATEGY": "task-arithmetic"})
    peak_mib = int((repo / ".rss").read_text()) / 1024
    # Holding the three versions of the model alone would take 192 MiB; the driver holds one tensor's versions.
    assert peak_mib < 150, f"merge driver peak {peak_mib:.0f} MiB"


def test_install_configures_the_merge_driver_and_uninstall_removes_it(installed: Path) -> None:
    driver = git("config", "--global", "merge.theta.driver", cwd=installed).stdout.decode().strip()
    assert driver == "git-theta merge-driver %O %A %B %P"
    theta("uninstall", cwd=installed)
    assert git("config", "--global", "merge.theta.driver", cwd=installed, check=False).returncode == 1


def overflowing_branches(repo: Path, dtype: type, base: float, changed: float) -> None:
    """main and side both move every value of tensor 'w' from ``base`` to ``changed``, differently in one value."""
    commit(repo, {"w": np.full(16, base, dtype)}, "base")
    git("checkout", "-q", "-b", "side", cwd=repo)
    commit(repo, {"w": np.full(16, changed, dtype)}, "side")
    git("checkout", "-q", "main", cwd=repo)
    ours = np.full(16, changed, dtype)
    ours[0] = base
    commit(repo, {"w": ours}, "main")


def test_a_merge_that_overflows_the_dtype_is_refused_unless_allowed(repo: Path) -> None:
    overflowing_branches(repo, np.float16, 30000, 40000)  # lambda 2: 30000 + 2 * 20000 > 65504, fp16's largest
    head = git("rev-parse", "HEAD", cwd=repo).stdout
    before = (repo / F).read_bytes()
    env = {"GIT_THETA_MERGE_STRATEGY": "task-arithmetic:lambda=2"}
    refused = git("merge", "-q", "side", cwd=repo, check=False, env=env)
    assert refused.returncode == 1
    said = [line for line in refused.stderr.decode().splitlines() if "git-theta" in line or "Warning" in line]
    assert said == [
        f"git-theta: error: {F}: tensor 'w' merged with task-arithmetic:lambda=2.0 overflows F16 (15 of 16 values inf "
        "or nan, where no version has any); lower lambda or the weights, choose another strategy (ours, theirs, ...), "
        "or add allow-overflow=true to the strategy to keep them"
    ], refused.stderr.decode()
    assert (repo / F).read_bytes() == before  # the conflict leaves our checkpoint
    git("merge", "--abort", cwd=repo)

    nway = theta("merge", "-s", "task-arithmetic:lambda=2", "side", cwd=repo, check=False)
    assert nway.returncode == 1 and b"overflows F16" in nway.stderr and b"Warning" not in nway.stderr
    assert nway.stderr.count(b"\n") == 1
    assert git("rev-parse", "HEAD", cwd=repo).stdout == head
    assert_clean(repo)

    allowed = {"GIT_THETA_MERGE_STRATEGY": "task-arithmetic:lambda=2,allow-overflow=true"}
    merged = git("merge", "-q", "--no-edit", "side", cwd=repo, env=allowed)
    assert b"Warning" not in merged.stderr
    assert np.isinf(load(repo)["w"][1:]).all() and load(repo)["w"][0] == 50000
    assert_clean(repo)


def test_an_average_of_fp64_extremes_is_refused_but_inputs_that_are_inf_are_not_an_overflow(repo: Path) -> None:
    overflowing_branches(repo, np.float64, 1e308, 1.7e308)  # the float64 sum overflows before it is halved
    refused = theta("merge", "-s", "average", "side", cwd=repo, check=False)
    assert refused.returncode == 1 and refused.stderr.decode().startswith(
        f"git-theta: error: {F}: tensor 'w' merged with average overflows F64 (16 of 16 values inf or nan, "
        "where no version has any); choose another strategy"
    )
    git("reset", "-q", "--hard", "HEAD~1", cwd=repo)  # back to the base
    git("branch", "-f", "side", "HEAD", cwd=repo)
    commit(repo, {"w": np.full(16, np.inf)}, "main again")
    git("checkout", "-q", "side", cwd=repo)
    commit(repo, {"w": np.full(16, 2.0)}, "side again")
    git("checkout", "-q", "main", cwd=repo)
    theta("merge", "-s", "average", "side", cwd=repo)
    assert np.isinf(load(repo)["w"]).all()
