"""End to end: push and clone checkpoints through real remotes: a bare repository on disk and an HTTP LFS server."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers import git, lfs_objects, random_model, save_safetensors, theta
from tests.remotes import HttpRemote, LocalRemote

Remote = HttpRemote | LocalRemote


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


def status(repo: Path) -> str:
    return git("status", "--porcelain", cwd=repo).stdout.decode()


def mtimes(remote: Remote) -> dict[str, int]:
    return {oid: remote.object_path(oid).stat().st_mtime_ns for oid in remote.objects()}


def edit_tensor(path: Path, name: str, delta: float = 1.0) -> None:
    from safetensors.numpy import load_file

    model = load_file(str(path))
    model[name] = model[name] + np.float32(delta)
    save_safetensors(path, model)


def test_push_then_clone_gives_identical_checkpoints(repo: Path, remote: Remote, tmp_path: Path) -> None:
    remote.add_to(repo)
    save_safetensors(repo / "model.safetensors", random_model(), metadata={"format": "pt"})
    commit_all(repo, "base")
    git("push", "-q", "origin", "main", cwd=repo)
    assert remote.objects() == lfs_objects(repo)

    remote.clone(tmp_path / "clone")
    assert (tmp_path / "clone" / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
    assert status(tmp_path / "clone") == ""


def test_second_push_uploads_only_what_the_remote_lacks(repo: Path, remote: Remote, tmp_path: Path) -> None:
    remote.add_to(repo)
    save_safetensors(repo / "model.safetensors", random_model())
    commit_all(repo, "base")
    git("push", "-q", "origin", "main", cwd=repo)
    before = mtimes(remote)

    edit_tensor(repo / "model.safetensors", "layer1.bias")
    commit_all(repo, "change one tensor")
    git("push", "-q", "origin", "main", cwd=repo)
    after = mtimes(remote)
    assert len(after) == len(before) + 1
    assert {oid: after[oid] for oid in before} == before  # nothing already there was sent again

    clone = tmp_path / "clone"
    remote.clone(clone)
    assert (clone / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()


def test_new_branch_and_merge_commit_pushes(repo: Path, remote: Remote, tmp_path: Path) -> None:
    remote.add_to(repo)
    (repo / "a").mkdir()
    (repo / "b").mkdir()
    save_safetensors(repo / "a" / "model.safetensors", random_model(seed=1))
    save_safetensors(repo / "b" / "model.safetensors", random_model(seed=2))
    commit_all(repo, "base")
    git("push", "-q", "origin", "main", cwd=repo)

    git("checkout", "-q", "-b", "feature", cwd=repo)
    edit_tensor(repo / "a" / "model.safetensors", "layer0.weight")
    commit_all(repo, "feature: tune a")
    git("push", "-q", "origin", "feature", cwd=repo)  # a new branch
    feature_a = (repo / "a" / "model.safetensors").read_bytes()

    git("checkout", "-q", "main", cwd=repo)
    edit_tensor(repo / "b" / "model.safetensors", "layer2.weight")
    commit_all(repo, "main: tune b")
    git("merge", "-q", "--no-ff", "-m", "merge feature", "feature", cwd=repo)
    git("push", "-q", "origin", "main", cwd=repo)  # a merge commit
    assert lfs_objects(repo) <= remote.objects()

    clone = tmp_path / "clone"
    remote.clone(clone)
    for path in ("a/model.safetensors", "b/model.safetensors"):
        assert (clone / path).read_bytes() == (repo / path).read_bytes()
    git("checkout", "-q", "feature", cwd=clone)
    assert (clone / "a" / "model.safetensors").read_bytes() == feature_a
    assert status(clone) == ""


def test_push_to_a_second_new_remote_uploads_everything(repo: Path, http_remote: HttpRemote, tmp_path: Path) -> None:
    http_remote.add_to(repo)
    save_safetensors(repo / "model.safetensors", random_model())
    commit_all(repo, "base")
    edit_tensor(repo / "model.safetensors", "layer0.bias")
    commit_all(repo, "tune")
    git("push", "-q", "origin", "main", cwd=repo)

    mirror = LocalRemote.create(tmp_path, "mirror")
    mirror.add_to(repo, "mirror")
    git("push", "-q", "mirror", "main", cwd=repo)
    assert mirror.objects() == lfs_objects(repo) == http_remote.objects()
    mirror.clone(tmp_path / "clone")
    git("checkout", "-q", "HEAD~1", cwd=tmp_path / "clone")
    git("checkout", "-q", "HEAD~1", cwd=repo)
    assert (tmp_path / "clone" / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()


def test_files_matched_in_subdirectories(repo: Path, http_remote: HttpRemote, tmp_path: Path) -> None:
    http_remote.add_to(repo)
    deep = repo / "models" / "bert" / "v1"
    deep.mkdir(parents=True)
    save_safetensors(deep / "model.safetensors", random_model(seed=3))
    (repo / "weights").mkdir()
    (repo / "weights" / ".gitattributes").write_text("*.w filter=theta diff=theta merge=theta\n")
    save_safetensors(repo / "weights" / "inner.w", random_model(seed=4, layers=1))
    commit_all(repo, "nested checkpoints")
    assert git("show", "HEAD:weights/inner.w", cwd=repo).stdout.startswith(b"{")
    git("push", "-q", "origin", "main", cwd=repo)
    assert http_remote.objects() == lfs_objects(repo)

    clone = tmp_path / "clone"
    http_remote.clone(clone)
    for path in ("models/bert/v1/model.safetensors", "weights/inner.w"):
        assert (clone / path).read_bytes() == (repo / path).read_bytes()
    assert status(clone) == ""


def test_shallow_and_single_branch_clones(repo: Path, http_remote: HttpRemote, tmp_path: Path) -> None:
    http_remote.add_to(repo)
    save_safetensors(repo / "model.safetensors", random_model())
    commit_all(repo, "base")
    edit_tensor(repo / "model.safetensors", "layer1.weight")
    commit_all(repo, "tune")
    latest = (repo / "model.safetensors").read_bytes()
    git("checkout", "-q", "-b", "other", "HEAD~1", cwd=repo)
    edit_tensor(repo / "model.safetensors", "layer2.bias", 3.0)
    commit_all(repo, "other")
    other = (repo / "model.safetensors").read_bytes()
    git("push", "-q", "origin", "main", "other", cwd=repo)

    shallow = tmp_path / "shallow"
    http_remote.clone(shallow, "--depth", "1", url=True)
    assert git("rev-list", "--count", "HEAD", cwd=shallow).stdout.strip() == b"1"
    assert (shallow / "model.safetensors").read_bytes() == latest
    assert status(shallow) == ""

    single = tmp_path / "single"
    http_remote.clone(single, "--single-branch", "--branch", "other", url=True)
    assert git("branch", "-r", cwd=single).stdout.split() == [b"origin/other"]
    assert (single / "model.safetensors").read_bytes() == other
    assert status(single) == ""


def test_plain_lfs_files_and_checkpoints_side_by_side(installed: Path, remote: Remote, tmp_path: Path) -> None:
    repo = tmp_path / "mixed"
    git("init", "-q", str(repo), cwd=tmp_path)
    git("lfs", "install", cwd=repo)  # git-lfs's filter and its pre-push hook, which ours chains to
    theta("track", "*.safetensors", cwd=repo)
    git("lfs", "track", "*.bin", cwd=repo)
    remote.add_to(repo)
    (repo / "data.bin").write_bytes(np.random.default_rng(5).bytes(50_000))
    save_safetensors(repo / "model.safetensors", random_model())
    commit_all(repo, "mixed")
    assert git("show", "HEAD:data.bin", cwd=repo).stdout.startswith(b"version https://git-lfs.github.com/spec/v1")
    git("push", "-q", "origin", "main", cwd=repo)
    assert remote.objects() == lfs_objects(repo)

    clone = tmp_path / "clone"
    remote.clone(clone)
    for path in ("data.bin", "model.safetensors"):
        assert (clone / path).read_bytes() == (repo / path).read_bytes()
    assert status(clone) == ""


def test_checkout_after_a_clone_without_checkout_downloads(repo: Path, remote: Remote, tmp_path: Path) -> None:
    remote.add_to(repo)
    save_safetensors(repo / "model.safetensors", random_model())
    commit_all(repo, "base")
    git("push", "-q", "origin", "main", cwd=repo)

    clone = tmp_path / "clone"
    remote.clone(clone, "--no-checkout")
    git("checkout", "-q", "main", cwd=clone)
    assert (clone / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()


def test_fetch_and_pull_download_only_what_the_new_checkout_needs(repo: Path, remote: Remote, tmp_path: Path) -> None:
    remote.add_to(repo)
    model = random_model(seed=4)
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    git("push", "-q", "origin", "main", cwd=repo)
    clone = tmp_path / "clone"
    remote.clone(clone)
    before = lfs_objects(clone)

    model["layer1.weight"] = model["layer1.weight"] * 2
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "double one weight")
    git("push", "-q", "origin", "main", cwd=repo)

    git("fetch", "-q", "origin", cwd=clone)
    assert lfs_objects(clone) == before  # fetching commits downloads no weights
    git("pull", "-q", "--ff-only", "origin", "main", cwd=clone)
    assert (clone / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
    assert len(lfs_objects(clone) - before) == 1  # only the changed tensor
    assert git("status", "--porcelain", cwd=clone).stdout == b""
