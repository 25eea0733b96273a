"""End to end: git_theta.open_checkpoint and git_theta.diff on real repositories, against the real producers.

Every test runs from a directory outside the repository (``repo=`` names it), so nothing may rely on the process's
working directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import git_theta
from git_theta.errors import GitThetaError
from git_theta.storage.errors import ObjectError
from tests.e2e.test_sharded_model import INDEX, save_bert
from tests.helpers import git, lfs_objects, random_model, save_safetensors, theta
from tests.remotes import HttpRemote

MODEL = "model.safetensors"


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


def mixed_model(seed: int) -> dict[str, np.ndarray]:
    """Tensors of several dtypes, as numpy writes them."""
    rng = np.random.default_rng(seed)
    model = random_model(seed, layers=2, width=32)
    model["half"] = rng.standard_normal((8, 4)).astype(np.float16)
    model["ids"] = rng.integers(-(2**40), 2**40, size=(16,), dtype=np.int64)
    model["mask"] = rng.integers(0, 2, size=(3, 5)).astype(bool)
    model["empty"] = np.zeros((0, 4), dtype=np.float32)
    return model


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, array in want.items():
        value = got[name]
        assert value.dtype == array.dtype and value.shape == array.shape, name
        assert value.tobytes() == array.tobytes(), name  # bit for bit


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from a directory that is not in any repository."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


def test_past_revisions_read_as_their_checkout(repo: Path, elsewhere: Path) -> None:
    from safetensors.numpy import load_file

    model = mixed_model(1)
    for step in range(3):  # later versions are stored as deltas of earlier ones
        model = {name: value.copy() for name, value in model.items()}
        model["layer0.weight"][step] += np.float32(0.5)
        model["ids"][step] += 1
        save_safetensors(repo / MODEL, model)
        commit_all(repo, f"v{step}")

    opened = {rev: git_theta.open_checkpoint(MODEL, rev, repo=repo) for rev in ("HEAD~2", "HEAD~1", "HEAD")}
    commits = {rev: git("rev-parse", rev, cwd=repo).stdout.decode().strip() for rev in opened}
    for rev, checkpoint in opened.items():
        git("checkout", "-q", commits[rev], cwd=repo)  # the mapping stays the version it was opened at
        checked_out = load_file(str(repo / MODEL))
        assert list(checkpoint) == list(checked_out)  # in the file's order
        assert_same(checkpoint, checked_out)
    git("checkout", "-q", "main", cwd=repo)

    model["half"][0, 0] = np.float16(7)
    save_safetensors(repo / MODEL, model)
    git("add", MODEL, cwd=repo)
    assert_same(git_theta.open_checkpoint(MODEL, None, repo=repo), model)  # rev=None: the index


def test_names_shapes_and_dtypes_come_without_reading_any_object(repo: Path, elsewhere: Path) -> None:
    model = mixed_model(2)
    save_safetensors(repo / MODEL, model)
    commit_all(repo, "v0")
    objects = repo / ".git" / "lfs" / "objects"
    objects.rename(repo / "moved-away")
    checkpoint = git_theta.open_checkpoint(MODEL, repo=str(repo))
    assert sorted(checkpoint) == sorted(model) and len(checkpoint) == len(model)
    assert checkpoint.shapes == {name: value.shape for name, value in model.items()}
    assert checkpoint.dtypes["half"] == "F16" and checkpoint.dtypes["mask"] == "BOOL"
    info = checkpoint.info("ids")
    assert (info.dtype, info.shape, info.nbytes, info.shard) == ("I64", (16,), 128, MODEL)
    (repo / "moved-away").rename(objects)
    assert checkpoint["ids"].tolist() == model["ids"].tolist()


def test_torch_tensors_on_request(repo: Path, elsewhere: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    generator = torch.Generator().manual_seed(0)
    model = {
        "w": torch.randn(16, 8, generator=generator).to(torch.bfloat16),
        "b": torch.randn(8, generator=generator),
        "c": torch.randn(4, generator=generator, dtype=torch.complex64),
    }
    save_file(model, str(repo / MODEL))
    commit_all(repo, "bf16")
    got = git_theta.open_checkpoint(MODEL, repo=repo, framework="torch")
    want = load_file(str(repo / MODEL))
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    assert git_theta.open_checkpoint(MODEL, repo=repo)["c"].dtype == np.complex64


def test_a_sharded_model_by_its_directory(installed: Path, tmp_path: Path, elsewhere: Path) -> None:
    from safetensors.numpy import load_file

    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    theta("track", "*.safetensors", cwd=repo)
    save_bert(repo, "20KB")
    commit_all(repo, "v1")
    save_bert(repo, "30KB", step=1)
    commit_all(repo, "v2")
    old = git_theta.open_checkpoint("model/", "HEAD~1", repo=repo)
    assert old.path == INDEX and len(old.shards) == 8
    git("checkout", "-q", "HEAD~1", cwd=repo)
    checked_out = {}
    for shard in old.shards:
        checked_out.update(load_file(str(repo / shard)))
    assert sorted(old) == sorted(checked_out)
    assert_same({name: old[name] for name in checked_out}, checked_out)


def test_diff_gives_the_records_of_format_json(repo: Path, elsewhere: Path) -> None:
    model = random_model(3)
    save_safetensors(repo / MODEL, model)
    commit_all(repo, "v0")
    model["layer1.bias"] = model["layer1.bias"] * np.float32(1.5)
    save_safetensors(repo / MODEL, model)
    commit_all(repo, "v1")
    model["layer0.bias"] = model["layer0.bias"] + np.float32(1)
    save_safetensors(repo / MODEL, model)  # in the working tree only

    def cli(*args: str) -> dict:
        return json.loads(theta("diff", "--format", "json", *args, cwd=repo).stdout)

    assert git_theta.diff("HEAD~1", "HEAD", MODEL, repo=repo) == cli("HEAD~1", "HEAD", "--", MODEL)
    assert git_theta.diff("HEAD~1", repo=repo, sort="rel") == cli("HEAD~1", "--sort", "rel")
    assert git_theta.diff("HEAD", "HEAD~1", repo=repo)["checkpoints"][0]["tensors"][0]["name"] == "layer1.bias"


def test_missing_objects_are_fetched_from_the_remote(
    repo: Path, http_remote: HttpRemote, tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = random_model(4, layers=3, width=64)
    save_safetensors(repo / MODEL, model)
    commit_all(repo, "v0")
    http_remote.add_to(repo)
    git("push", "-q", "origin", "main", cwd=repo)
    clone = tmp_path / "clone"
    monkeypatch.setenv("GIT_LFS_SKIP_SMUDGE", "1")  # a lazy clone: metadata only
    http_remote.clone(clone)
    monkeypatch.delenv("GIT_LFS_SKIP_SMUDGE")
    assert lfs_objects(clone) == set()

    checkpoint = git_theta.open_checkpoint(MODEL, repo=clone)
    assert checkpoint["layer1.weight"].tobytes() == model["layer1.weight"].tobytes()
    assert len(lfs_objects(clone)) == 1  # only the object of the tensor read
    checkpoint.prefetch()
    assert lfs_objects(clone) == lfs_objects(repo)
    assert_same(checkpoint, model)


def test_a_corrupt_object_is_one_clear_error(repo: Path, elsewhere: Path) -> None:
    model = random_model(5)
    save_safetensors(repo / MODEL, model)
    commit_all(repo, "v0")
    oid = json.loads(git("show", f"HEAD:{MODEL}", cwd=repo).stdout)["tensors"]["layer1.weight"]["oid"]
    path = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))

    checkpoint = git_theta.open_checkpoint(MODEL, repo=repo)
    with pytest.raises(ObjectError) as raised:
        checkpoint["layer1.weight"]
    message = str(raised.value)
    assert "\n" not in message and oid[:12] in message and f"'layer1.weight' of {MODEL}" in message, message
    assert checkpoint["layer0.weight"].tobytes() == model["layer0.weight"].tobytes()  # the others still read


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda repo: git_theta.open_checkpoint("nothing.safetensors", repo=repo), "nothing.safetensors: no tracked"),
        (lambda repo: git_theta.open_checkpoint(MODEL, "v9", repo=repo), "unknown revision 'v9'"),
        (
            lambda repo: git_theta.open_checkpoint("notes.txt", repo=repo),
            "notes.txt at HEAD is not stored by git-theta",
        ),
        (lambda repo: git_theta.open_checkpoint(MODEL, repo=repo, framework="jax"), "unknown framework 'jax'"),
        (lambda repo: git_theta.open_checkpoint(MODEL, repo=repo / "nowhere"), "no such directory"),
        (lambda repo: git_theta.diff("HEAD", "HEAD", repo=repo, sort="size"), "unknown sort 'size'"),
    ],
)
def test_bad_calls_raise_one_clear_error(repo: Path, elsewhere: Path, call, message: str) -> None:
    save_safetensors(repo / MODEL, random_model(6, layers=1, width=4))
    (repo / "notes.txt").write_text("notes\n")
    commit_all(repo, "v0")
    with pytest.raises(GitThetaError, match=message.replace("'", ".")):
        call(repo)


MEMORY_PROGRAM = """
import resource, sys
import numpy as np
import git_theta, git_theta.api
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
checkpoint = git_theta.open_checkpoint("model.safetensors", repo=sys.argv[1])
total = sum(float(checkpoint[name].sum()) for name in ["t3"])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024)
"""


def test_memory_is_bounded_by_the_tensors_read(repo: Path, elsewhere: Path) -> None:
    rng = np.random.default_rng(7)
    tensor = 8 << 20  # 24 tensors of 8 MiB: a 192 MiB checkpoint
    save_safetensors(repo / MODEL, {f"t{i}": rng.standard_normal(tensor // 4, dtype=np.float32) for i in range(24)})
    commit_all(repo, "large")
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROGRAM, str(repo)], capture_output=True, text=True, check=True
    )
    grown = int(result.stdout)
    assert grown < 3 * tensor, f"reading one 8 MiB tensor grew the peak RSS by {grown / 2**20:.1f} MiB"
