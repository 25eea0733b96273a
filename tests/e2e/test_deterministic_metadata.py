"""End to end: a file's metadata depends on its content and the repository's state only, never on which files the
same filter process cleaned before; and a copy of a fine-tuned model is never stored again."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from tests.helpers import git, lfs_objects, random_model, save_safetensors

F = "model.safetensors"


def fine_tuned(model: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: v + rng.standard_normal(v.shape, dtype=np.float32) * np.float32(1e-3) for k, v in model.items()}


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


def assert_each_file_cleans_alone_to_its_metadata(repo: Path) -> None:
    """Cleaning the files one at a time, last first (a process each), stages exactly what is committed."""
    paths = git("ls-files", "*.safetensors", cwd=repo).stdout.decode().split()
    for path in reversed(paths):
        git("add", "--renormalize", "--", path, cwd=repo)
    assert git("diff", "--cached", "--stat", cwd=repo).stdout == b""
    git("add", "--renormalize", ".", cwd=repo)  # and all of them in one process
    assert git("diff", "--cached", "--stat", cwd=repo).stdout == b""


def assert_fresh_clone_is_clean(repo: Path, clone: Path) -> None:
    git("clone", "-q", str(repo), str(clone), cwd=repo.parent)
    for path in clone.rglob("*.safetensors"):  # make git clean every file again instead of trusting its stat data
        os.utime(path, ns=(1, 1))
    assert git("status", "--porcelain", cwd=clone).stdout == b""
    assert_each_file_cleans_alone_to_its_metadata(clone)


def model_with_twins(seed: int) -> dict[str, np.ndarray]:
    model = random_model(seed=seed, width=96)
    model["layer1.weight"] = model["layer0.weight"].copy()  # tied weights: the same bytes under two names
    return model


def test_copies_in_several_folders_and_tied_tensors_clean_the_same_alone(repo: Path, tmp_path: Path) -> None:
    base = model_with_twins(0)
    base["layer1.weight"] = random_model(seed=9, width=96)["layer1.weight"]  # untied in the base
    save_safetensors(repo / F, base)
    commit_all(repo, "base")
    tuned = fine_tuned(base, 1)
    tuned["layer1.weight"] = tuned["layer0.weight"].copy()  # tied after: two names, two different previous values
    save_safetensors(repo / F, tuned)
    for folder in ("checkpoints/step-100", "final"):
        (repo / folder).mkdir(parents=True)
        shutil.copy(repo / F, repo / folder / F)
    commit_all(repo, "fine-tune, and copies of it")
    assert_each_file_cleans_alone_to_its_metadata(repo)
    assert_fresh_clone_is_clean(repo, tmp_path / "clone")


def test_stash_and_rebase_leave_no_phantom_change(repo: Path) -> None:
    base = random_model(seed=2, width=96)
    save_safetensors(repo / F, base)
    commit_all(repo, "base")
    git("checkout", "-q", "-b", "side", cwd=repo)
    (repo / "copy").mkdir()
    save_safetensors(repo / "copy" / F, fine_tuned(base, 3))
    commit_all(repo, "a copy, fine-tuned")
    git("checkout", "-q", "main", cwd=repo)
    save_safetensors(repo / F, fine_tuned(base, 3))
    commit_all(repo, "fine-tuned")
    save_safetensors(repo / F, fine_tuned(base, 4))
    git("stash", "-q", cwd=repo)
    assert git("status", "--porcelain", cwd=repo).stdout == b""
    git("stash", "pop", "-q", cwd=repo)
    assert git("status", "--porcelain", cwd=repo).stdout == b" M model.safetensors\n"
    git("checkout", "-q", "--", F, cwd=repo)
    git("checkout", "-q", "side", cwd=repo)
    git("rebase", "-q", "main", cwd=repo)
    assert git("status", "--porcelain", cwd=repo).stdout == b""
    assert_each_file_cleans_alone_to_its_metadata(repo)


def test_a_copy_of_a_fine_tuned_model_is_not_stored_again(repo: Path) -> None:
    base = random_model(seed=5, width=256)
    save_safetensors(repo / F, base)
    commit_all(repo, "base")
    save_safetensors(repo / F, fine_tuned(base, 6))
    commit_all(repo, "fine-tune")  # stored as deltas
    before = lfs_objects(repo)
    (repo / "copy").mkdir()
    shutil.copy(repo / F, repo / "copy" / F)
    commit_all(repo, "a copy in another folder")
    assert lfs_objects(repo) == before


def test_copies_added_with_the_fine_tune_store_one_delta(repo: Path) -> None:
    base = random_model(seed=7, width=256)
    save_safetensors(repo / F, base)
    commit_all(repo, "base")
    before = lfs_objects(repo)
    save_safetensors(repo / F, fine_tuned(base, 8))
    commit_all(repo, "fine-tune alone")
    alone = lfs_objects(repo) - before
    git("reset", "-q", "--hard", "HEAD~1", cwd=repo)
    save_safetensors(repo / F, fine_tuned(base, 8))
    for folder in ("a", "b"):
        (repo / folder).mkdir()
        shutil.copy(repo / F, repo / folder / F)
    commit_all(repo, "fine-tune and two copies")
    assert lfs_objects(repo) - before == alone
