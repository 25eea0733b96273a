"""End to end: a Hugging Face sharded checkpoint under one tracking pattern, cloned, then re-sharded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import git, lfs_objects, random_model, save_safetensors, theta
from tests.remotes import LocalRemote

INDEX = "model.safetensors.index.json"


def write_sharded(directory: Path, model: dict, shards: list[list[str]]) -> dict[str, bytes]:
    """Write ``model`` as Hugging Face does: ``model-0000i-of-0000n.safetensors`` files and the index json."""
    for old in directory.glob("model-*-of-*.safetensors"):
        old.unlink()
    weight_map, total = {}, 0
    for number, names in enumerate(shards, 1):
        filename = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_safetensors(directory / filename, {name: model[name] for name in names}, metadata={"format": "pt"})
        for name in names:
            weight_map[name] = filename
            total += model[name].nbytes
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.name.startswith("model")}


def checkout_files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.name.startswith("model")}


def stored_objects(repo: Path, files: dict[str, bytes]) -> set[str]:
    """The objects the committed metadata of the shards among ``files`` refers to."""
    oids = set()
    for filename in files:
        if filename != INDEX:
            tensors = json.loads(git("show", f"HEAD:{filename}", cwd=repo).stdout)["tensors"]
            oids |= {entry["oid"] for entry in tensors.values()}
    return oids


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


@pytest.fixture
def sharded_repo(installed: Path, tmp_path: Path) -> Path:
    """A repository that tracks checkpoints with the one pattern a Hugging Face model needs."""
    path = tmp_path / "repo"
    path.mkdir()
    git("init", "-q", cwd=path)
    theta("track", "*.safetensors", cwd=path)
    return path


def test_shards_are_tracked_deduplicated_and_rebuilt_exactly(sharded_repo: Path, tmp_path: Path) -> None:
    repo = sharded_repo
    model = random_model(seed=5, layers=6, width=32)
    names = list(model)
    two = write_sharded(repo, model, [names[:6], names[6:]])
    commit_all(repo, "two shards")

    for filename in two:
        tracked = git("check-attr", "filter", "--", filename, cwd=repo).stdout.decode()
        stored = git("show", f"HEAD:{filename}", cwd=repo).stdout
        if filename == INDEX:
            assert tracked.endswith(": unspecified\n") and stored == two[INDEX]  # a plain git file
        else:
            assert tracked.endswith(": theta\n") and stored.startswith(b'{\n  "git_theta_metadata": 1,')
    objects = lfs_objects(repo)
    assert objects == stored_objects(repo, two)  # each shard's tensors stored (small ones in a pack), nothing else

    remote = LocalRemote.create(tmp_path)
    remote.add_to(repo)
    git("push", "-q", "origin", "main", cwd=repo)
    clone = tmp_path / "clone"
    remote.clone(clone)
    assert checkout_files(clone) == two
    assert git("status", "--porcelain", cwd=clone).stdout == b""

    # Re-shard: the same tensors, moved between three shards and reordered; none changed.
    three = write_sharded(repo, model, [names[8:] + names[:1], names[1:5], names[5:8]])
    commit_all(repo, "three shards")
    assert git("status", "--porcelain", cwd=repo).stdout == b""
    assert lfs_objects(repo) == objects  # no tensor stored again (needs the clean filter's cross-file dedup)

    git("checkout", "-q", "HEAD~1", cwd=repo)
    assert checkout_files(repo) == two
    git("checkout", "-q", "main", cwd=repo)
    assert checkout_files(repo) == three
    assert git("status", "--porcelain", cwd=repo).stdout == b""
