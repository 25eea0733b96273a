"""End to end: `git theta status`, and what `ls` and `fsck` say of checkpoints whose weights are not here (yet)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.helpers import git, random_model, save_safetensors, theta
from tests.remotes import HttpRemote, LocalRemote


def commit_models(repo: Path) -> None:
    (repo / "models").mkdir()
    save_safetensors(repo / "a.safetensors", random_model(seed=1))
    save_safetensors(repo / "models" / "b.safetensors", random_model(seed=2))
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "two models", cwd=repo)


def status_lines(repo: Path, *args: str) -> dict[str, str]:
    out = theta("status", *args, cwd=repo).stdout.decode()
    return dict(line.split(": ", 1) for line in out.splitlines())


def test_status_counts_changed_tensors_not_staged_and_staged(repo: Path) -> None:
    commit_models(repo)
    assert status_lines(repo) == {
        "a.safetensors": "weights checked out (6 tensors); unchanged since staged",
        "models/b.safetensors": "weights checked out (6 tensors); unchanged since staged",
    }
    model = random_model(seed=1)
    model["layer0.bias"] = model["layer0.bias"] + 1
    model["extra"] = np.zeros(3, np.float32)
    del model["layer2.weight"]
    save_safetensors(repo / "a.safetensors", model)
    lines = status_lines(repo)
    assert lines["a.safetensors"] == "weights checked out (6 tensors); not staged: 1 tensor changed, 1 added, 1 removed"

    git("add", "a.safetensors", cwd=repo)
    model["layer1.bias"] = model["layer1.bias"] * 2
    save_safetensors(repo / "a.safetensors", model)
    lines = status_lines(repo)
    assert lines["a.safetensors"] == (
        "weights checked out (6 tensors); not staged: 1 tensor changed; staged: 1 tensor changed, 1 added, 1 removed"
    )
    (repo / "models" / "b.safetensors").unlink()
    save_safetensors(repo / "c.safetensors", random_model(seed=3))
    git("add", "c.safetensors", cwd=repo)
    lines = status_lines(repo, "models", "c.safetensors")  # paths, as for git status
    assert lines == {
        "models/b.safetensors": "deleted from the working tree",
        "c.safetensors": "weights checked out (6 tensors); unchanged since staged; staged: new checkpoint of 6 tensors",
    }
    inside = theta("status", cwd=repo / "models").stdout.decode()  # paths shown from the current directory
    assert "\nb.safetensors: deleted from the working tree\n" in inside and "../a.safetensors: " in inside

    report = json.loads(theta("status", "--json", cwd=repo).stdout)
    assert report["a.safetensors"]["not_staged"] == {"changed": 1, "added": 0, "removed": 0}
    assert report["a.safetensors"]["staged"] == {"changed": 1, "added": 1, "removed": 1}
    assert report["c.safetensors"]["new"] is True and report["models/b.safetensors"]["worktree"] == "deleted"


def test_status_of_a_checkpoint_in_conflict(repo: Path) -> None:
    commit_models(repo)
    git("checkout", "-q", "-b", "side", cwd=repo)
    for seed, branch in ((5, "side"), (6, "main")):
        git("checkout", "-q", branch, cwd=repo)
        save_safetensors(repo / "a.safetensors", random_model(seed=seed))
        git("commit", "-q", "-am", f"change on {branch}", cwd=repo)
    assert git("merge", "-q", "side", cwd=repo, check=False).returncode != 0
    assert status_lines(repo, "a.safetensors")["a.safetensors"].startswith("unmerged; resolve it with git theta merge")


def test_lazy_clone_ls_status_and_fsck_tell_not_downloaded_from_lost(
    repo: Path, remote: HttpRemote | LocalRemote, tmp_path: Path
) -> None:
    remote.add_to(repo)
    commit_models(repo)
    git("push", "-q", "origin", "main", cwd=repo)
    clone = tmp_path / "clone"
    remote.clone(clone, "-c", "theta.lazy=true")

    listing = theta("ls", "--no-tensors", cwd=clone).stdout.decode().splitlines()
    assert listing[0].endswith("objects)  metadata only (git theta pull a.safetensors)")
    assert listing[1].endswith("  metadata only (git theta pull models/b.safetensors)")
    at_head = theta("ls", "HEAD", "--no-tensors", cwd=clone).stdout.decode().splitlines()
    assert all(line.endswith("objects)  6 object(s) not downloaded") for line in at_head)
    assert json.loads(theta("ls", "--json", cwd=clone).stdout)["a.safetensors"]["metadata_only"] is True
    assert (
        status_lines(clone)["a.safetensors"] == "metadata only, weights not checked out (git theta pull a.safetensors)"
    )

    fsck = theta("fsck", cwd=clone)
    assert "12 referenced object(s) not downloaded yet; remote 'origin' has them" in fsck.stdout.decode()
    assert fsck.stdout.decode().endswith(
        "0 referenced tensor object(s) present and intact locally; 12 more not downloaded yet\n"
    )

    theta("pull", "models/b.safetensors", cwd=clone)
    listing = theta("ls", "--no-tensors", cwd=clone).stdout.decode().splitlines()
    assert listing[1].endswith("objects)") and "metadata only" in listing[0]
    assert "models/b.safetensors: weights checked out" in theta("status", cwd=clone).stdout.decode()

    lost = json.loads(theta("ls", "--json", cwd=clone).stdout)["a.safetensors"]["tensors"]["layer0.bias"]["oid"]
    remote.object_path(lost).unlink()
    broken = theta("fsck", cwd=clone, check=False)
    assert broken.returncode == 1
    problems = [line for line in broken.stdout.decode().splitlines() if not line.startswith("git-theta:")]
    assert problems == [
        f"a.safetensors: tensor 'layer0.bias': object {lost} is missing locally and on remote 'origin' "
        f"({problems[0].rsplit('(', 1)[1]}"
    ]
    assert "5 referenced object(s) not downloaded yet" in broken.stdout.decode()
    assert b"fsck found 1 problem(s)" in broken.stderr


def test_fsck_says_when_the_remote_cannot_be_asked(repo: Path, tmp_path: Path) -> None:
    remote = LocalRemote.create(tmp_path)
    remote.add_to(repo)
    commit_models(repo)
    git("push", "-q", "origin", "main", cwd=repo)
    clone = tmp_path / "clone"
    remote.clone(clone, "-c", "theta.lazy=true")
    git("remote", "set-url", "origin", str(tmp_path / "gone.git"), cwd=clone)
    result = theta("fsck", cwd=clone, check=False)
    assert result.returncode == 1
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 12 and all("is missing locally (remote 'origin' could not be asked" in line for line in lines)
