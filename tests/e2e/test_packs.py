"""End to end: the small tensors of a checkpoint are stored in packs, through real git, git-lfs and remotes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import git, lfs_objects, save_safetensors, theta
from tests.remotes import HttpRemote, LocalRemote

F = "model.safetensors"


def tiny_model(count: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"block.{index:04}.param": rng.standard_normal(64, dtype=np.float32) for index in range(count)}


def entries(repo: Path, rev: str = "HEAD") -> dict[str, dict]:
    return json.loads(git("show", f"{rev}:{F}", cwd=repo).stdout)["tensors"]


def object_path(repo: Path, oid: str) -> Path:
    return repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def status(repo: Path) -> bytes:
    return git("status", "--porcelain", cwd=repo).stdout


def commit(repo: Path, message: str) -> None:
    git("add", F, cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


def test_2000_tiny_tensors_are_one_object_that_clones_byte_for_byte(
    repo: Path, remote: HttpRemote | LocalRemote, tmp_path: Path
) -> None:
    remote.add_to(repo)
    save_safetensors(repo / F, tiny_model())
    original = (repo / F).read_bytes()
    commit(repo, "tiny")
    tensors = entries(repo)
    assert len({entry["oid"] for entry in tensors.values()}) == 1 and all("packed" in e for e in tensors.values())
    assert lfs_objects(repo) == {next(iter(tensors.values()))["oid"]}

    (repo / F).unlink()
    git("checkout", "--", F, cwd=repo)
    assert (repo / F).read_bytes() == original
    git("add", "--renormalize", ".", cwd=repo)
    assert status(repo) == b""

    git("push", "-q", "origin", "main", cwd=repo)
    assert remote.objects() == lfs_objects(repo)
    clone = tmp_path / "clone"
    remote.clone(clone)
    assert (clone / F).read_bytes() == original
    assert status(clone) == b""
    git("add", "--renormalize", ".", cwd=clone)
    assert status(clone) == b""
    assert "1 referenced tensor object(s) present and intact" in theta("fsck", cwd=clone).stdout.decode()


def test_one_changed_tiny_tensor_stores_one_small_object(repo: Path) -> None:
    model = tiny_model(200)
    save_safetensors(repo / F, model)
    commit(repo, "tiny")
    before, objects = entries(repo), lfs_objects(repo)

    model["block.0042.param"] = model["block.0042.param"] + 1
    save_safetensors(repo / F, model)
    commit(repo, "one changed")
    after, new_objects = entries(repo), lfs_objects(repo) - objects
    assert [name for name in before if before[name] != after[name]] == ["block.0042.param"]
    assert new_objects == {after["block.0042.param"]["oid"]}
    assert object_path(repo, after["block.0042.param"]["oid"]).stat().st_size < 1024
    assert "block.0042.param" in theta("diff", "HEAD~1", "HEAD", cwd=repo).stdout.decode()

    many = {name: value * 2 for name, value in model.items()}
    save_safetensors(repo / F, many)
    commit(repo, "all changed")
    assert len({entry["oid"] for entry in entries(repo).values()}) == 1  # all new: one new pack
    git("checkout", "-q", "HEAD~1", cwd=repo)
    save_safetensors(repo / "expected.safetensors", model)
    assert (repo / F).read_bytes() == (repo / "expected.safetensors").read_bytes()
    assert status(repo) == b"?? expected.safetensors\n"


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_damaged_pack_fails_the_checkout_with_one_line_and_writes_nothing(repo: Path, damage: str) -> None:
    save_safetensors(repo / F, tiny_model(100))
    commit(repo, "tiny")
    oid = next(iter(entries(repo).values()))["oid"]
    pack = object_path(repo, oid)
    if damage == "corrupt":
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0x10
        pack.chmod(0o644)
        pack.write_bytes(bytes(data))
    else:
        pack.unlink()
    (repo / F).unlink()
    result = git("checkout", "--", F, cwd=repo, check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.decode().splitlines() if line.startswith("git-theta:")]
    assert len(lines) == 1 and b"Traceback" not in result.stderr, result.stderr.decode()
    assert oid[:12] in lines[0] and F in lines[0]
    assert not (repo / F).exists()
    fsck = theta("fsck", cwd=repo, check=False)
    assert fsck.returncode == 1 and len(fsck.stdout.decode().splitlines()) == 1 and oid in fsck.stdout.decode()


def test_lazy_clone_pull_gc_and_fsck_handle_packs(repo: Path, http_remote: HttpRemote, tmp_path: Path) -> None:
    http_remote.add_to(repo)
    first, second = tiny_model(300), tiny_model(300, seed=1)
    save_safetensors(repo / F, first)
    commit(repo, "first")
    save_safetensors(repo / F, second)
    commit(repo, "second")
    git("push", "-q", "origin", "main", cwd=repo)
    expected = (repo / F).read_bytes()

    clone = tmp_path / "clone"
    git("clone", "-q", "-c", f"remote.origin.lfsurl={http_remote.lfs_url}", str(http_remote.path), str(clone),
        cwd=tmp_path, env={"GIT_LFS_SKIP_SMUDGE": "1"})  # fmt: skip
    assert lfs_objects(clone) == set() and status(clone) == b""
    theta("pull", cwd=clone)
    assert (clone / F).read_bytes() == expected
    assert lfs_objects(clone) == {next(iter(entries(clone).values()))["oid"]}
    assert status(clone) == b""

    git("reset", "-q", "--hard", "HEAD~1", cwd=repo)
    git("update-ref", "-d", "refs/remotes/origin/main", cwd=repo)
    git("update-ref", "-d", "ORIG_HEAD", cwd=repo)
    git("reflog", "expire", "--expire=now", "--all", cwd=repo)
    assert "removed 1 " in theta("gc", cwd=repo).stdout.decode()  # the second commit's pack
    theta("fsck", cwd=repo)
    assert lfs_objects(repo) == {next(iter(entries(repo).values()))["oid"]}
