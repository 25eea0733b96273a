"""End to end: checkpoints through real git and git-lfs — add, commit, change, check out, branch, clone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import git, lfs_objects, random_model, save_safetensors, theta


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


def status(repo: Path) -> str:
    return git("status", "--porcelain", cwd=repo).stdout.decode()


def test_safetensors_round_trip_is_byte_identical(repo: Path) -> None:
    model = random_model()
    save_safetensors(repo / "model.safetensors", model, metadata={"format": "pt", "note": "ünïcode"})
    original = (repo / "model.safetensors").read_bytes()
    commit_all(repo, "base")

    stored = git("show", "HEAD:model.safetensors", cwd=repo).stdout
    assert stored.startswith(b'{\n  "git_theta_metadata": 1,')
    assert len(stored) < len(original) / 4

    (repo / "model.safetensors").unlink()
    git("checkout", "--", "model.safetensors", cwd=repo)
    assert (repo / "model.safetensors").read_bytes() == original
    assert status(repo) == ""


def test_only_the_changed_tensor_is_stored_again(repo: Path) -> None:
    model = random_model()
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    v1 = (repo / "model.safetensors").read_bytes()
    before = lfs_objects(repo)
    assert len(before) == len(model)

    model["layer1.bias"] = model["layer1.bias"] + 1
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "change one tensor")
    assert len(lfs_objects(repo) - before) == 1

    git("checkout", "-q", "HEAD~1", cwd=repo)
    assert (repo / "model.safetensors").read_bytes() == v1
    assert status(repo) == ""


def test_smallest_possible_edit_is_a_change(repo: Path) -> None:
    model = {"w": np.ones((16, 16), dtype=np.float32)}
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "ones")
    model["w"][3, 4] = np.nextafter(np.float32(1.0), np.float32(2.0))
    save_safetensors(repo / "model.safetensors", model)
    edited = (repo / "model.safetensors").read_bytes()
    assert status(repo) == " M model.safetensors\n"
    commit_all(repo, "tiny edit")

    (repo / "model.safetensors").unlink()
    git("checkout", "--", "model.safetensors", cwd=repo)
    assert (repo / "model.safetensors").read_bytes() == edited


def test_identical_tensors_are_stored_once_across_files_and_branches(repo: Path) -> None:
    model = random_model()
    model["tied"] = model["layer0.weight"].copy()
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    objects = lfs_objects(repo)
    assert len(objects) == len(model) - 1

    git("checkout", "-q", "-b", "copy", cwd=repo)
    (repo / "sub").mkdir()
    shutil.copy(repo / "model.safetensors", repo / "sub" / "copy.safetensors")
    commit_all(repo, "a copy in a subdirectory")
    assert lfs_objects(repo) == objects
    assert git("show", "HEAD:sub/copy.safetensors", cwd=repo).stdout.startswith(b"{")


def test_branches_and_checkouts_keep_status_clean(repo: Path) -> None:
    save_safetensors(repo / "model.safetensors", random_model(seed=1))
    commit_all(repo, "base")
    git("checkout", "-q", "-b", "finetune", cwd=repo)
    save_safetensors(repo / "model.safetensors", random_model(seed=2))
    commit_all(repo, "finetune")
    finetuned = (repo / "model.safetensors").read_bytes()

    git("checkout", "-q", "main", cwd=repo)
    assert status(repo) == ""
    git("checkout", "-q", "finetune", cwd=repo)
    assert (repo / "model.safetensors").read_bytes() == finetuned
    assert status(repo) == ""


def test_torch_and_npz_checkpoints_round_trip_exactly(repo: Path) -> None:
    torch = pytest.importorskip("torch")
    state = {
        "model": {"w": torch.randn(8, 4, dtype=torch.bfloat16), "b": torch.arange(4, dtype=torch.int64)},
        "step": 7,
        "names": ["a", "b"],
    }
    torch.save(state, repo / "ckpt.pt")
    arrays = {"x": np.arange(12, dtype=np.float16).reshape(3, 4), "mask": np.array([True, False])}
    np.savez(repo / "arrays.npz", **arrays)
    commit_all(repo, "torch and numpy")
    (repo / "ckpt.pt").unlink()
    (repo / "arrays.npz").unlink()
    git("checkout", "--", ".", cwd=repo)

    loaded = torch.load(repo / "ckpt.pt", weights_only=True)
    assert loaded["step"] == 7 and loaded["names"] == ["a", "b"]
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["model"]["w"].dtype == torch.bfloat16
    assert torch.equal(loaded["model"]["b"], state["model"]["b"])
    with np.load(repo / "arrays.npz") as back:
        for key, value in arrays.items():
            assert back[key].dtype == value.dtype and back[key].tobytes() == value.tobytes()
    assert status(repo) == ""


def test_single_shot_filters_work_without_the_process_filter(repo: Path) -> None:
    git("config", "--global", "--unset", "filter.theta.process", cwd=repo)
    save_safetensors(repo / "model.safetensors", random_model())
    original = (repo / "model.safetensors").read_bytes()
    commit_all(repo, "base")
    (repo / "model.safetensors").unlink()
    git("checkout", "--", "model.safetensors", cwd=repo)
    assert (repo / "model.safetensors").read_bytes() == original


def test_lfs_storage_setting_is_honoured(repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "lfs-elsewhere"
    git("config", "lfs.storage", str(elsewhere), cwd=repo)
    save_safetensors(repo / "model.safetensors", random_model())
    commit_all(repo, "base")
    assert len(list((elsewhere / "objects").glob("*/*/*"))) == 6
    assert not (repo / ".git" / "lfs" / "objects").exists()


def test_empty_file_matched_by_the_pattern_is_kept_as_is(repo: Path) -> None:
    (repo / "empty.safetensors").write_bytes(b"")
    commit_all(repo, "empty")
    assert git("show", "HEAD:empty.safetensors", cwd=repo).stdout == b""


def test_clone_from_a_bare_remote_checks_out_weights(repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", str(remote), cwd=repo)
    (repo / "models").mkdir()
    save_safetensors(repo / "models" / "model.safetensors", random_model())
    original = (repo / "models" / "model.safetensors").read_bytes()
    commit_all(repo, "base")
    git("push", "-q", "origin", "main", cwd=repo)
    assert lfs_objects(remote) == lfs_objects(repo)

    clone = tmp_path / "clone"
    git("clone", "-q", str(remote), str(clone), cwd=tmp_path)
    assert (clone / "models" / "model.safetensors").read_bytes() == original
    assert status(clone) == ""


def test_checkpoint_type_option_and_attribute(repo: Path) -> None:
    torch = pytest.importorskip("torch")
    theta("track", "*.ckpt", cwd=repo)
    torch.save({"w": torch.ones(3)}, repo / "model.ckpt")
    theta("add", "model.ckpt", "--checkpoint-type", "torch", cwd=repo)
    stored = git("show", ":model.ckpt", cwd=repo).stdout
    assert b'"checkpoint_type": "torch"' in stored

    (repo / ".gitattributes").write_text((repo / ".gitattributes").read_text() + "*.weights theta-checkpoint=npz\n")
    theta("track", "*.weights", cwd=repo)
    with open(repo / "arrays.weights", "wb") as handle:
        np.savez(handle, a=np.zeros(3))
    theta("add", "arrays.weights", cwd=repo)
    assert b'"checkpoint_type": "npz"' in git("show", ":arrays.weights", cwd=repo).stdout


def test_theta_add_refuses_untracked_paths(repo: Path) -> None:
    save_safetensors(repo / "model.bin2", random_model())
    result = theta("add", "model.bin2", cwd=repo, check=False)
    assert result.returncode == 2
    assert b"git theta track" in result.stderr


def test_a_clone_gets_the_pre_push_hook_and_its_new_models_reach_the_remote(repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", str(remote), cwd=repo)
    save_safetensors(repo / "model.safetensors", random_model())
    commit_all(repo, "base")
    git("push", "-q", "origin", "main", cwd=repo)

    clone = tmp_path / "clone"
    git("clone", "-q", str(remote), str(clone), cwd=tmp_path)
    assert "git-theta hook" in (clone / ".git" / "hooks" / "pre-push").read_text()
    save_safetensors(clone / "new.safetensors", random_model(seed=9))
    commit_all(clone, "a new model from the clone")
    git("push", "-q", "origin", "main", cwd=clone)
    assert lfs_objects(clone) <= lfs_objects(remote)

    fresh = tmp_path / "fresh"
    git("clone", "-q", str(remote), str(fresh), cwd=tmp_path)
    assert (fresh / "new.safetensors").read_bytes() == (clone / "new.safetensors").read_bytes()


def test_clone_from_a_file_url(repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", remote.as_uri(), cwd=repo)
    save_safetensors(repo / "model.safetensors", random_model(seed=3))
    commit_all(repo, "base")
    git("push", "-q", "origin", "main", cwd=repo)
    clone = tmp_path / "clone"
    git("clone", "-q", remote.as_uri(), str(clone), cwd=tmp_path)
    assert (clone / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
    assert git("status", "--porcelain", cwd=clone).stdout == b""
