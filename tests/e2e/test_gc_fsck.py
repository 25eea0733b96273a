"""End to end: `git theta gc` removes only what nothing references; `git theta fsck` finds what is lost or corrupt."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from tests.helpers import git, lfs_objects, random_model, save_safetensors, theta
from tests.remotes import HttpRemote, LocalRemote


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


def expire_reflogs(repo: Path) -> None:
    git("reflog", "expire", "--expire=all", "--expire-unreachable=all", "--all", cwd=repo)


def object_path(repo: Path, oid: str) -> Path:
    return repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def staged_oids(repo: Path, rev: str = "") -> dict[str, str]:
    """Tensor name -> oid of model.safetensors at ``rev`` (the index by default)."""
    listing = theta("ls", *([rev] if rev else []), "--json", cwd=repo).stdout
    return {name: entry["oid"] for name, entry in json.loads(listing)["model.safetensors"]["tensors"].items()}


def save_variant(repo: Path, model: dict[str, np.ndarray], name: str, value: float) -> str:
    """Save ``model`` with tensor ``name`` filled with ``value``; stage it; return the new tensor's oid."""
    model[name] = np.full_like(model[name], value)
    save_safetensors(repo / "model.safetensors", model)
    git("add", "model.safetensors", cwd=repo)
    return staged_oids(repo)[name]


def test_gc_removes_only_unreferenced_tensor_objects(repo: Path) -> None:
    model = random_model()
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    kept_branch = save_variant(repo, model, "layer0.bias", 1.0)
    git("commit", "-q", "-m", "branch only", cwd=repo)
    on_branch = (repo / "model.safetensors").read_bytes()
    git("branch", "other", cwd=repo)
    git("reset", "-q", "--hard", "HEAD~1", cwd=repo)

    model = random_model()
    kept_stash = save_variant(repo, model, "layer1.bias", 2.0)
    stashed = (repo / "model.safetensors").read_bytes()
    git("stash", "-q", cwd=repo)
    orphan = save_variant(repo, model, "layer2.bias", 3.0)  # staged, then replaced: referenced by nothing
    kept_index = save_variant(repo, model, "layer2.bias", 4.0)
    plain = b"a plain Git LFS object, not ours"
    plain_oid = hashlib.sha256(plain).hexdigest()
    object_path(repo, plain_oid).parent.mkdir(parents=True, exist_ok=True)
    object_path(repo, plain_oid).write_bytes(plain)
    expire_reflogs(repo)  # the branch and stash must keep theirs alone
    size = object_path(repo, orphan).stat().st_size
    before = lfs_objects(repo)

    dry = theta("gc", "--dry-run", cwd=repo).stdout.decode()
    assert f"would remove {orphan} ({size} bytes)" in dry
    assert f"would remove 1 unreferenced tensor object(s), {size} bytes" in dry
    assert lfs_objects(repo) == before

    out = theta("gc", cwd=repo).stdout.decode()
    assert f"removed 1 unreferenced tensor object(s), {size} bytes" in out
    assert lfs_objects(repo) == before - {orphan}
    assert {kept_branch, kept_stash, kept_index, plain_oid} <= lfs_objects(repo)
    assert "removed 0 " in theta("gc", cwd=repo).stdout.decode()

    theta("fsck", cwd=repo)  # every object that refs and the index reach is still there
    git("commit", "-q", "-m", "staged", cwd=repo)
    for rev, expected in (("stash@{0}", stashed), ("other", on_branch)):
        git("checkout", rev, "--", "model.safetensors", cwd=repo)
        assert (repo / "model.safetensors").read_bytes() == expected


def test_gc_removes_stale_temporary_files_of_failed_writes_only(repo: Path) -> None:
    save_safetensors(repo / "model.safetensors", random_model())
    commit_all(repo, "base")
    tmp = repo / ".git" / "lfs" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    two_hours_ago = time.time() - 7200
    stale, writing, lfs_own = tmp / "theta-k2j4x9ab", tmp / "theta-w8c1m3zq", tmp / "1861545047"
    for path in (stale, writing, lfs_own):
        path.write_bytes(b"x" * 100)
    for path in (stale, lfs_own):  # a killed add's file, and one of git-lfs's own, which is none of ours
        os.utime(path, (two_hours_ago, two_hours_ago))

    dry = theta("gc", "--dry-run", cwd=repo).stdout.decode()
    assert f"would remove {stale} (100 bytes)\n" in dry
    assert "git-theta: would remove 1 stale temporary file(s) of failed writes, 100 bytes\n" in dry
    assert stale.exists()
    out = theta("gc", cwd=repo).stdout.decode()
    assert "git-theta: removed 1 stale temporary file(s) of failed writes, 100 bytes\n" in out
    assert sorted(tmp.iterdir()) == sorted([writing, lfs_own])  # a concurrent add is still writing the fresh one
    assert "stale temporary" not in theta("gc", cwd=repo).stdout.decode()


def test_gc_keeps_what_reflogs_and_orig_head_reference(repo: Path) -> None:
    model = random_model()
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    amended = save_variant(repo, model, "layer0.weight", 5.0)
    git("commit", "-q", "-m", "tune", cwd=repo)
    git("reset", "-q", "--hard", "HEAD~1", cwd=repo)

    assert "removed 0 " in theta("gc", cwd=repo).stdout.decode()
    expire_reflogs(repo)
    assert "removed 0 " in theta("gc", cwd=repo).stdout.decode()  # `git reset ORIG_HEAD` must still work
    assert amended in lfs_objects(repo)
    git("update-ref", "-d", "ORIG_HEAD", cwd=repo)
    assert "removed 1 " in theta("gc", cwd=repo).stdout.decode()
    assert amended not in lfs_objects(repo)


def test_gc_keeps_what_a_linked_worktree_has_staged(repo: Path, tmp_path: Path) -> None:
    model = random_model()
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    worktree = tmp_path / "worktree"
    git("worktree", "add", "-q", "-b", "side", str(worktree), cwd=repo)
    staged_there = save_variant(worktree, model, "layer0.bias", 7.0)

    assert "removed 0 " in theta("gc", cwd=repo).stdout.decode()
    assert staged_there in lfs_objects(repo)
    assert not list((repo / ".git").glob("**/index.lock"))
    git("commit", "-q", "-m", "side", cwd=worktree)
    theta("fsck", cwd=repo)


def test_metadata_from_a_newer_version_keeps_its_objects_and_is_reported(repo: Path) -> None:
    model = random_model()
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    newer = save_variant(repo, model, "layer0.bias", 8.0)
    git("reset", "-q", "--hard", "HEAD", cwd=repo)  # the object is referenced by nothing we can read...
    future = git("show", ":model.safetensors", cwd=repo).stdout.replace(
        b'"git_theta_metadata": 1', b'"git_theta_metadata": 2'
    )
    (repo / "future.json").write_bytes(future.replace(staged_oids(repo)["layer0.bias"].encode(), newer.encode()))
    commit_all(repo, "metadata from the future")  # ... but by metadata a newer git-theta wrote

    assert "removed 0 " in theta("gc", cwd=repo).stdout.decode()
    assert newer in lfs_objects(repo)
    result = theta("fsck", cwd=repo, check=False)
    assert result.returncode == 1
    assert result.stdout.decode().startswith("future.json: metadata version 2 is not supported")


def test_gc_refuses_while_another_git_command_holds_the_index(repo: Path) -> None:
    (repo / ".git" / "index.lock").write_bytes(b"")
    result = theta("gc", cwd=repo, check=False)
    assert result.returncode == 1
    assert b"another git command is running" in result.stderr
    assert (repo / ".git" / "index.lock").exists()  # not ours to remove


def test_fsck_reports_missing_and_corrupt_objects(repo: Path) -> None:
    model = random_model()
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    out = theta("fsck", cwd=repo).stdout.decode()
    assert "6 referenced tensor object(s) present and intact locally" in out

    oids = staged_oids(repo)
    object_path(repo, oids["layer0.weight"]).unlink()
    corrupt = object_path(repo, oids["layer1.weight"])
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0x55
    corrupt.write_bytes(bytes(data))

    result = theta("fsck", cwd=repo, check=False)
    assert result.returncode == 1
    missing, corrupted = sorted(result.stdout.decode().splitlines(), key=lambda line: "layer1.weight" in line)
    assert missing == f"model.safetensors: tensor 'layer0.weight': object {oids['layer0.weight']} is missing locally"
    assert re.match(rf"model.safetensors: tensor 'layer1.weight': object {oids['layer1.weight']} is corrupt", corrupted)
    assert b"git-theta: error: fsck found 2 problem(s)" in result.stderr


def test_fsck_remote_finds_objects_the_remote_lacks(repo: Path, remote: HttpRemote | LocalRemote) -> None:
    remote.add_to(repo)
    save_safetensors(repo / "model.safetensors", random_model())
    commit_all(repo, "base")
    git("push", "-q", "origin", "main", cwd=repo)
    assert "present and intact locally and on remote 'origin'" in theta("fsck", "--remote", cwd=repo).stdout.decode()

    lost = staged_oids(repo)["layer2.bias"]
    remote.object_path(lost).unlink()
    result = theta("fsck", "--remote", "origin", cwd=repo, check=False)
    assert result.returncode == 1
    [line] = result.stdout.decode().splitlines()
    assert line.startswith(f"model.safetensors: tensor 'layer2.bias': object {lost} is missing on remote 'origin' (")

    unknown = theta("fsck", "--remote", "nowhere", cwd=repo, check=False)
    assert unknown.returncode == 2 and b"no remote named 'nowhere'" in unknown.stderr
