"""The merge methods of the research git-theta serves, on real checkpoints through real git, against independent
float64 references written here (docs/merges.md): fine-tuning transfer, LiNeS, Model Breadcrumbs, Model Stock."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np

from tests.e2e.test_merge import F, assert_clean, commit, load
from tests.helpers import git, theta

NAMES = ["embed.weight", "layers.0.w", "layers.1.w", "layers.2.w", "head.weight"]


def layered(seed: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (scale * rng.standard_normal((8, 16))).astype(np.float32) for name in NAMES}


def moved(model: dict[str, np.ndarray], seed: int, scale: float = 0.1) -> dict[str, np.ndarray]:
    """A fine-tune of ``model``: every floating-point tensor moved a little."""
    rng = np.random.default_rng(seed)
    return {
        name: (value + scale * rng.standard_normal(value.shape)).astype(value.dtype)
        if value.dtype.kind == "f"
        else value
        for name, value in model.items()
    }


def wide(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float64)


def record_of(repo: Path, rev: str = "HEAD") -> dict:
    blob = git("cat-file", "blob", f"{rev}:{F}", cwd=repo).stdout
    return json.loads(blob)["merge"]


def fine_tunes(repo: Path, base: dict[str, np.ndarray], tunes: dict[str, dict[str, np.ndarray]]) -> None:
    """Commit ``base`` on main and each fine-tune on a branch of its name from it; end on main."""
    commit(repo, base, "base")
    for name, tensors in tunes.items():
        git("checkout", "-q", "-b", name, "main", cwd=repo)
        commit(repo, tensors, f"fine-tune {name}")
    git("checkout", "-q", "main", cwd=repo)


def test_cherry_pick_transfers_only_the_picked_change(repo: Path) -> None:
    old = layered(1)
    tuned = moved(old, 2, 0.3)
    tuned["embed.weight"] = old["embed.weight"]  # the fine-tune left it: the new base's version stays
    commit(repo, old, "base model v1")
    git("checkout", "-q", "-b", "finetune", cwd=repo)
    commit(repo, tuned, "fine-tune v1")
    picked = git("rev-parse", "HEAD", cwd=repo).stdout.decode().strip()
    git("checkout", "-q", "main", cwd=repo)
    new = moved(old, 3, 0.5)
    new["head.weight"] = old["head.weight"]  # the new release left it: only the fine-tune changed it
    commit(repo, new, "base model v2")
    head = git("rev-parse", "HEAD", cwd=repo).stdout.decode().strip()
    env = {"GIT_THETA_MERGE_STRATEGY": "task-arithmetic:lambda=0.8"}
    git("cherry-pick", "finetune", cwd=repo, env=env)
    got = load(repo)
    for name in NAMES:  # Lin et al. (2025): new base + lambda * (fine-tuned - old base), in float64, rounded once
        expected = (wide(new[name]) + 0.8 * (wide(tuned[name]) - wide(old[name]))).astype(np.float32)
        assert np.array_equal(got[name], expected), name
    record = record_of(repo)
    assert record["by"] == "cherry-pick" and record["transfer"] is True
    assert record["from"] == [head, picked] and record["merged"] == {"task-arithmetic:lambda=0.8": 4}
    assert_clean(repo)
    log = theta("log", F, cwd=repo).stdout.decode()
    assert f"cherry-picked {picked[:7]}" in log and "transferring its change" in log
    replayed = theta("merge", "--replay", "HEAD", cwd=repo).stdout.decode()
    assert replayed == f"git-theta: {F}: the replay of HEAD gives the same checkpoint\n"


def test_revert_subtracts_the_scaled_change_and_a_merge_scales_both(repo: Path) -> None:
    base = layered(4)
    commit(repo, base, "base")
    step = moved(base, 5)
    commit(repo, step, "a change to revert")
    later = moved(step, 6)
    commit(repo, later, "later")
    git("revert", "--no-edit", "HEAD~1", cwd=repo, env={"GIT_THETA_MERGE_STRATEGY": "task-arithmetic:lambda=0.5"})
    got = load(repo)
    for name in NAMES:  # O = the reverted commit, B = its parent: later + 0.5 * (base - step)
        expected = (wide(later[name]) + 0.5 * (wide(base[name]) - wide(step[name]))).astype(np.float32)
        assert np.array_equal(got[name], expected), name
    assert record_of(repo)["by"] == "revert"

    git("checkout", "-q", "-b", "side", "HEAD~3", cwd=repo)
    commit(repo, step, "side")
    git("checkout", "-q", "main", cwd=repo)
    git("merge", "-q", "--no-edit", "side", cwd=repo, env={"GIT_THETA_MERGE_STRATEGY": "task-arithmetic:lambda=0.5"})
    merged, ours = load(repo), got
    for name in NAMES:  # a merge is not a pick: lambda scales both sides' changes
        taus = (wide(ours[name]) - wide(base[name])) + (wide(step[name]) - wide(base[name]))
        assert np.array_equal(merged[name], (wide(base[name]) + 0.5 * taus).astype(np.float32)), name
    assert "transfer" not in record_of(repo) and record_of(repo)["by"] == "merge"


def breadcrumbs_reference(
    base: np.ndarray, models: list[np.ndarray], density: float, gamma: float, weights: list[float], ties: bool
) -> np.ndarray:
    """mergekit's breadcrumbs(_ties), from its definition: per change, drop the top gamma, keep the next density."""
    masked = []
    for model in models:
        tau = (wide(model) - wide(base)).ravel()
        size = tau.size
        n_top, n_keep = int(gamma * size), int(density * size)
        n_top = min(n_top, size - n_keep)
        ranked = np.argsort(-np.abs(tau), kind="stable")
        keep = np.zeros(size, bool)
        keep[ranked[n_top : n_top + n_keep]] = True
        masked.append(np.where(keep, tau, 0.0))
    weighted = np.stack(masked) * np.asarray(weights)[:, None]
    if ties:
        elected = np.where(weighted.sum(axis=0) >= 0, 1.0, -1.0)
        weighted = np.where(np.sign(weighted) == elected, weighted, 0.0)
    return (wide(base).ravel() + weighted.sum(axis=0)).reshape(base.shape)


def test_breadcrumbs_through_git_merge_and_breadcrumbs_ties_through_git_theta_merge(repo: Path) -> None:
    base = layered(7)
    tunes = {name: moved(base, seed) for name, seed in (("a", 8), ("b", 9), ("c", 10))}
    fine_tunes(repo, base, tunes)
    git("checkout", "-q", "-b", "work", "a", cwd=repo)
    spec = "breadcrumbs:density=0.25,gamma=0.0625"  # 128 elements: drop the top 8, keep the next 32
    git("merge", "-q", "--no-edit", "b", cwd=repo, env={"GIT_THETA_MERGE_STRATEGY": spec})
    got = load(repo)
    for name in NAMES:
        expected = breadcrumbs_reference(base[name], [tunes["a"][name], tunes["b"][name]], 0.25, 0.0625, [1, 1], False)
        np.testing.assert_allclose(got[name], expected, rtol=1e-6, atol=1e-6)
        assert np.count_nonzero(wide(got[name]) != wide(base[name])) <= 64

    git("checkout", "-q", "main", cwd=repo)
    spec = "breadcrumbs-ties:density=0.5,gamma=0.125"
    theta("merge", "-s", spec, "--weight", "HEAD=0", "--weight", "c=2", "a", "b", "c", cwd=repo)
    got = load(repo)
    for name in NAMES:
        models = [base[name], *(tunes[key][name] for key in "abc")]
        expected = breadcrumbs_reference(base[name], models, 0.5, 0.125, [0, 1, 1, 2], True)
        np.testing.assert_allclose(got[name], expected, rtol=1e-6, atol=1e-6)
    message = git("log", "-1", "--format=%B", cwd=repo).stdout.decode()
    assert "Theta-Merge: breadcrumbs-ties:density=0.5,gamma=0.125,lambda=1.0,normalize=False\n" in message
    assert "Theta-Merge-Weights: 0/1/1/2\n" in message
    assert_clean(repo)


def test_model_stock_of_three_fine_tunes(repo: Path) -> None:
    base = layered(11)
    shared = layered(12, 0.1)
    tunes = {
        name: {key: value + shared[key] + moved(base, seed, 0.08)[key] - base[key] for key, value in base.items()}
        for name, seed in (("a", 13), ("b", 14), ("c", 15))
    }
    fine_tunes(repo, base, tunes)
    theta("merge", "-s", "model-stock", "--weight", "HEAD=0", "a", "b", "c", cwd=repo)
    got = load(repo)
    for name in NAMES:  # Jang et al. (2024): t = N cos / (1 + (N - 1) cos); t * mean + (1 - t) * base
        taus = [(wide(tunes[key][name]) - wide(base[name])).ravel() for key in "abc"]
        cos = np.mean([a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in itertools.combinations(taus, 2)])
        t = 3 * cos / (1 + 2 * cos)
        mean = np.mean([wide(tunes[key][name]) for key in "abc"], axis=0)
        np.testing.assert_allclose(got[name], t * mean + (1 - t) * wide(base[name]), rtol=1e-5, atol=1e-6)
    assert "Theta-Merge: model-stock\n" in git("log", "-1", "--format=%B", cwd=repo).stdout.decode()


def lines_factor(name: str, alpha: float, beta: float, blocks: int) -> float:
    """LiNeS (Wang et al.): alpha + beta * l / (L - 1) for block l (the first number in the name), else alpha."""
    numbers = [int(part) for part in name.replace("/", ".").split(".") if part.isdigit()]
    return alpha if not numbers else alpha + beta * numbers[0] / (blocks - 1)


def test_lines_on_a_real_model_is_the_post_training_edit(repo: Path, minilm: Path) -> None:
    from safetensors.numpy import load_file, save_file

    shutil.copy(minilm, repo / F)
    git("add", F, cwd=repo)
    git("commit", "-q", "-m", "all-MiniLM-L6-v2", cwd=repo)
    base = load_file(str(minilm))
    tuned = moved(base, 16, 0.01)
    git("checkout", "-q", "-b", "finetune", cwd=repo)
    save_file(tuned, str(repo / F))
    git("commit", "-q", "-am", "fine-tune", cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    theta("merge", "-s", "task-arithmetic:lines=0.2/0.8", "finetune", cwd=repo)
    got = load(repo)
    assert len(got) == 104
    for name, value in base.items():  # 6 blocks: encoder.layer.0 ... encoder.layer.5; embeddings and pooler: alpha
        if value.dtype.kind != "f":
            assert np.array_equal(got[name], value), name  # position ids: unchanged
            continue
        factor = lines_factor(name, 0.2, 0.8, 6)
        expected = (wide(value) + factor * (wide(tuned[name]) - wide(value))).astype(np.float32)
        assert np.array_equal(got[name], expected), name
    theta("merge", "--replay", "HEAD", cwd=repo)


def test_lines_composes_with_ties_dare_and_breadcrumbs(repo: Path) -> None:
    base = layered(17)
    tunes = {"a": moved(base, 18), "b": moved(base, 19)}
    fine_tunes(repo, base, tunes)
    for spec in ("ties:density=0.5", "dare:drop=0.5,seed=4", "breadcrumbs:density=0.5,gamma=0.125"):
        git("checkout", "-q", "-B", "work", "a", cwd=repo)
        git("merge", "-q", "--no-edit", "b", cwd=repo, env={"GIT_THETA_MERGE_STRATEGY": spec})
        plain = load(repo)
        git("checkout", "-q", "-B", "work", "a", cwd=repo)
        env = {"GIT_THETA_MERGE_STRATEGY": spec + ",lines=0.1/0.9"}
        git("merge", "-q", "--no-edit", "b", cwd=repo, env=env)
        scaled = load(repo)
        for name in NAMES:  # the merged task vector of each block, scaled by alpha + beta * l / (L - 1)
            factor = lines_factor(name, 0.1, 0.9, 3)
            delta = wide(plain[name]) - wide(base[name])
            np.testing.assert_allclose(scaled[name], wide(base[name]) + factor * delta, rtol=1e-5, atol=1e-6)
        assert record_of(repo)["strategy"].endswith(",lines=0.1/0.9")


def test_rebase_replays_each_commit_as_a_pick(repo: Path) -> None:
    base = layered(20)
    commit(repo, base, "base")
    git("checkout", "-q", "-b", "topic", cwd=repo)
    tuned = moved(base, 21)
    commit(repo, tuned, "fine-tune")
    original = git("rev-parse", "HEAD", cwd=repo).stdout.decode().strip()
    git("checkout", "-q", "main", cwd=repo)
    release = moved(base, 22)
    commit(repo, release, "new release")
    onto = git("rev-parse", "HEAD", cwd=repo).stdout.decode().strip()
    git("checkout", "-q", "topic", cwd=repo)
    git("rebase", "-q", "main", cwd=repo, env={"GIT_THETA_MERGE_STRATEGY": "task-arithmetic:lambda=0.5"})
    got = load(repo)
    for name in NAMES:
        expected = (wide(release[name]) + 0.5 * (wide(tuned[name]) - wide(base[name]))).astype(np.float32)
        assert np.array_equal(got[name], expected), name
    record = record_of(repo)
    assert (record["by"], record["transfer"], record["from"]) == ("rebase", True, [onto, original])
    assert_clean(repo)
