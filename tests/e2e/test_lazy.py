"""End to end: clone without weights (GIT_LFS_SKIP_SMUDGE=1), then materialise checkpoints with git theta pull."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import git, lfs_objects, random_model, save_safetensors, theta


def pushed_repo(repo: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", str(remote), cwd=repo)
    (repo / "models").mkdir()
    originals = {}
    for name, seed in (("a.safetensors", 1), ("models/b.safetensors", 2)):
        save_safetensors(repo / name, random_model(seed=seed))
        originals[name] = (repo / name).read_bytes()
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "two models", cwd=repo)
    git("push", "-q", "origin", "main", cwd=repo)
    return remote, originals


def test_lazy_clone_then_pull_one_then_all(repo: Path, tmp_path: Path) -> None:
    remote, originals = pushed_repo(repo, tmp_path)
    clone = tmp_path / "clone"
    git("clone", "-q", str(remote), str(clone), cwd=tmp_path, env={"GIT_LFS_SKIP_SMUDGE": "1"})
    for name in originals:
        assert (clone / name).read_bytes().startswith(b'{\n  "git_theta_metadata"')
    assert lfs_objects(clone) == set()
    assert git("status", "--porcelain", cwd=clone).stdout == b""

    theta("pull", "models/b.safetensors", cwd=clone)
    assert (clone / "models" / "b.safetensors").read_bytes() == originals["models/b.safetensors"]
    assert (clone / "a.safetensors").read_bytes().startswith(b"{")
    assert len(lfs_objects(clone)) == 6

    out = theta("pull", cwd=clone, env={"GIT_LFS_SKIP_SMUDGE": "1"}).stdout.decode()
    assert "a.safetensors: weights checked out" in out and "b.safetensors" not in out
    assert (clone / "a.safetensors").read_bytes() == originals["a.safetensors"]
    assert git("status", "--porcelain", cwd=clone).stdout == b""
    again = theta("pull", cwd=clone)
    assert b"already has its weights" in again.stderr


def test_pull_of_an_untracked_path_says_so(repo: Path) -> None:
    result = theta("pull", "nothing.safetensors", cwd=repo, check=False)
    assert result.returncode == 2 and b"no checkpoint tracked by git-theta matches" in result.stderr


def test_push_from_a_lazy_clone_to_a_new_remote_is_refused_until_weights_are_pulled(repo: Path, tmp_path: Path) -> None:
    remote, _ = pushed_repo(repo, tmp_path)
    clone = tmp_path / "clone"
    git("clone", "-q", str(remote), str(clone), cwd=tmp_path, env={"GIT_LFS_SKIP_SMUDGE": "1"})
    git("commit", "-q", "--allow-empty", "-m", "more", cwd=clone)
    git("push", "-q", "origin", "main", cwd=clone)  # the origin has every object: nothing to upload

    other = tmp_path / "other.git"
    git("init", "-q", "--bare", str(other), cwd=tmp_path)
    git("remote", "add", "other", str(other), cwd=clone)
    refused = git("push", "-q", "other", "main", cwd=clone, check=False)
    assert refused.returncode != 0
    assert b"neither stored here nor on 'other'" in refused.stderr and b"git theta pull" in refused.stderr
    theta("pull", cwd=clone)
    git("push", "-q", "other", "main", cwd=clone)
    assert lfs_objects(other) == lfs_objects(clone)


def test_theta_diff_in_a_lazy_clone_downloads_only_the_changed_tensors(repo: Path, tmp_path: Path) -> None:
    remote, _ = pushed_repo(repo, tmp_path)
    model = random_model(seed=1)
    model["layer0.bias"] = model["layer0.bias"] * 2
    save_safetensors(repo / "a.safetensors", model)
    git("commit", "-q", "-am", "scale one bias", cwd=repo)
    git("push", "-q", "origin", "main", cwd=repo)

    clone = tmp_path / "clone"
    git("clone", "-q", str(remote), str(clone), cwd=tmp_path, env={"GIT_LFS_SKIP_SMUDGE": "1"})
    out = theta("diff", "HEAD~1", "HEAD", cwd=clone).stdout.decode()
    assert "layer0.bias" in out
    assert len(lfs_objects(clone)) == 2  # the old and the new value of the one changed tensor


def test_theta_lazy_setting_keeps_checkouts_metadata_only_until_pulled(repo: Path, tmp_path: Path) -> None:
    remote, _ = pushed_repo(repo, tmp_path)
    git("checkout", "-q", "-b", "other", cwd=repo)
    save_safetensors(repo / "a.safetensors", random_model(seed=5))
    git("commit", "-q", "-am", "other weights", cwd=repo)
    git("push", "-q", "origin", "other", cwd=repo)

    clone = tmp_path / "clone"
    git("clone", "-q", "-c", "theta.lazy=true", str(remote), str(clone), cwd=tmp_path)
    git("checkout", "-q", "other", cwd=clone)
    assert (clone / "a.safetensors").read_bytes().startswith(b"{") and lfs_objects(clone) == set()
    assert git("status", "--porcelain", cwd=clone).stdout == b""

    theta("pull", "a.safetensors", cwd=clone)
    assert (clone / "a.safetensors").read_bytes() == (repo / "a.safetensors").read_bytes()
    assert git("status", "--porcelain", cwd=clone).stdout == b""
    git("checkout", "-q", "main", cwd=clone)
    assert (clone / "models" / "b.safetensors").read_bytes().startswith(b"{")  # still lazy
