"""End to end: pushing to a remote that lacks objects its refs do not reveal (a new URL, an LFS store left behind)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.e2e.test_remotes import commit_all, edit_tensor, mtimes, status
from tests.helpers import git, lfs_objects, random_model, save_safetensors, theta
from tests.remotes import HttpRemote, LocalRemote

Remote = HttpRemote | LocalRemote


def fresh_like(remote: Remote, parent: Path) -> Remote:
    """A new, empty remote of the same kind (a new bare repository; for HTTP, a new namespace on the same server)."""
    if isinstance(remote, HttpRemote):
        return HttpRemote.create(remote.server, parent)
    return LocalRemote.create(parent, "new")


def set_url(repo: Path, remote: Remote, name: str = "origin") -> None:
    """``git remote set-url``, and point the LFS endpoint at the new remote's too."""
    git("remote", "set-url", name, str(remote.path), cwd=repo)
    if isinstance(remote, HttpRemote):
        git("config", f"remote.{name}.lfsurl", remote.lfs_url, cwd=repo)


def two_versions(repo: Path) -> None:
    """Commit a model, then a version of it with one tensor changed."""
    save_safetensors(repo / "model.safetensors", random_model())
    commit_all(repo, "base")
    edit_tensor(repo / "model.safetensors", "layer1.weight")
    commit_all(repo, "tune")


def assert_clone_matches(remote: Remote, repo: Path, clone: Path, *revisions: str) -> None:
    """A clone of ``remote`` checks out ``model.safetensors`` byte for byte as ``repo`` has it at each revision."""
    remote.clone(clone)
    for revision in revisions:
        git("checkout", "-q", revision, cwd=clone)
        expected = git("show", f"{revision}:model.safetensors", cwd=repo).stdout  # metadata: compare checkouts
        assert git("show", f"{revision}:model.safetensors", cwd=clone).stdout == expected
        git("checkout", "-q", revision, cwd=repo)
        assert (clone / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
        assert status(clone) == ""


def uploaded(result) -> str:
    """The summary line ``git theta push`` prints."""
    [line] = [line for line in result.stdout.decode().splitlines() if line.startswith("git-theta: uploaded")]
    return line


def test_push_after_set_url_uploads_what_the_new_remote_lacks(repo: Path, remote: Remote, tmp_path: Path) -> None:
    remote.add_to(repo)
    two_versions(repo)
    git("push", "-q", "origin", "main", cwd=repo)
    new = fresh_like(remote, tmp_path)
    set_url(repo, new)
    assert git("rev-parse", "origin/main", cwd=repo).stdout.strip() == git("rev-parse", "main", cwd=repo).stdout.strip()

    git("push", "-q", "origin", "main", cwd=repo)  # the remote-tracking ref says origin has it all: it is stale
    assert new.objects() == lfs_objects(repo)
    assert_clone_matches(new, repo, tmp_path / "clone", "main", "main~1")


def test_new_branch_pushed_after_set_url_uploads_its_history(repo: Path, remote: Remote, tmp_path: Path) -> None:
    remote.add_to(repo)
    two_versions(repo)
    git("push", "-q", "origin", "main", cwd=repo)
    git("checkout", "-q", "-b", "feature", cwd=repo)
    edit_tensor(repo / "model.safetensors", "layer2.bias")
    commit_all(repo, "feature")
    new = fresh_like(remote, tmp_path)
    set_url(repo, new)

    git("push", "-q", "origin", "feature", cwd=repo)
    assert new.objects() == lfs_objects(repo)
    assert_clone_matches(new, repo, tmp_path / "clone", "feature", "feature~2")


def test_git_theta_push_repairs_a_remote_whose_lfs_store_lacks_objects(
    repo: Path, remote: Remote, tmp_path: Path
) -> None:
    remote.add_to(repo)
    two_versions(repo)
    git("push", "-q", "--no-verify", "origin", "main", cwd=repo)  # the git side only, as a copy of the bare repo
    assert remote.objects() == set()
    assert remote.clone(tmp_path / "broken", check=False).returncode != 0
    assert git("push", "origin", "main", cwd=repo).stderr.strip().endswith(b"Everything up-to-date")
    assert remote.objects() == set()  # git push has nothing to send, so it cannot repair this

    result = theta("push", cwd=repo)
    count = len(lfs_objects(repo))
    size = sum(remote.object_path(oid).stat().st_size for oid in remote.objects())
    assert uploaded(result) == f"git-theta: uploaded {count} object(s), {size} bytes, to origin; 0 already there"
    assert remote.objects() == lfs_objects(repo)
    assert_clone_matches(remote, repo, tmp_path / "clone", "main", "main~1")


def test_git_theta_push_all_uploads_every_branch_and_tag(repo: Path, remote: Remote, tmp_path: Path) -> None:
    remote.add_to(repo, "mirror")
    two_versions(repo)
    git("checkout", "-q", "-b", "feature", "main~1", cwd=repo)
    edit_tensor(repo / "model.safetensors", "layer0.bias")
    commit_all(repo, "feature")
    git("checkout", "-q", "--detach", "main~1", cwd=repo)
    edit_tensor(repo / "model.safetensors", "layer2.weight")
    commit_all(repo, "tagged only")
    git("tag", "-a", "-m", "release", "v1", cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    git("push", "-q", "--no-verify", "mirror", "main", "feature", "v1", cwd=repo)

    only_main = theta("push", "mirror", "main", cwd=repo)
    assert uploaded(only_main).startswith("git-theta: uploaded 7 object(s)")  # 6 tensors, then 1 changed
    assert len(remote.objects()) == 7
    everything = theta("push", "--all", "mirror", cwd=repo)
    assert uploaded(everything).startswith("git-theta: uploaded 2 object(s)")
    assert remote.objects() == lfs_objects(repo)
    assert_clone_matches(remote, repo, tmp_path / "clone", "main", "main~1", "feature", "v1")


def test_second_push_uploads_nothing(repo: Path, http_remote: HttpRemote, tmp_path: Path) -> None:
    http_remote.add_to(repo)
    two_versions(repo)
    git("push", "-q", "origin", "main", cwd=repo)
    before = mtimes(http_remote)
    assert len(before) == 7

    again = theta("push", cwd=repo)
    assert uploaded(again) == "git-theta: uploaded 0 object(s), 0 bytes, to origin; 7 already there"
    git("checkout", "-q", "-b", "copy", cwd=repo)
    pushed = git("push", "origin", "copy", cwd=repo)  # a new ref: its whole history is checked, nothing is sent
    assert b"git-theta: uploaded" not in pushed.stderr
    assert mtimes(http_remote) == before


def test_git_theta_push_failing_upload_exits_non_zero_with_one_line(repo: Path, own_http_remote: HttpRemote) -> None:
    own_http_remote.add_to(repo)
    two_versions(repo)
    server = own_http_remote.server
    server.stop()
    server.start(die_after_bytes=1)  # the server process dies halfway through the first upload

    failed = theta("push", "origin", cwd=repo, check=False)
    assert failed.returncode == 1
    [line] = failed.stderr.decode().splitlines()
    assert line.startswith("git-theta: error: uploading 7 tensor object(s) to 'origin' failed: ")


def test_git_theta_push_defaults_to_the_remote_git_push_would_use(repo: Path, remote: Remote, tmp_path: Path) -> None:
    remote.add_to(repo, "mirror")
    origin = LocalRemote.create(tmp_path, "origin")
    origin.add_to(repo)
    two_versions(repo)
    git("config", "remote.pushDefault", "mirror", cwd=repo)
    git("checkout", "-q", "--detach", "main~1", cwd=repo)  # and with no branch, HEAD is what is pushed

    assert uploaded(theta("push", cwd=repo)).startswith("git-theta: uploaded 6 object(s), ")
    assert origin.objects() == set()
    git("config", "branch.main.pushRemote", "origin", cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    assert uploaded(theta("push", cwd=repo)).startswith("git-theta: uploaded 7 object(s), ")
    assert len(remote.objects()) == 6 and origin.objects() == lfs_objects(repo)


def test_git_theta_push_asks_about_many_objects_in_batches(repo: Path, http_remote: HttpRemote) -> None:
    http_remote.add_to(repo)
    rng = np.random.default_rng(0)  # 260 tensors of 16 KiB, too large to pack: 260 objects, asked about in 3 batches
    save_safetensors(
        repo / "model.safetensors", {f"t{i}": rng.standard_normal(4096, dtype=np.float32) for i in range(260)}
    )
    commit_all(repo, "many tensors")
    git("push", "-q", "--no-verify", "origin", "main", cwd=repo)

    assert uploaded(theta("push", cwd=repo)).startswith("git-theta: uploaded 260 object(s), ")
    assert uploaded(theta("push", cwd=repo)).endswith("; 260 already there")
    assert http_remote.objects() == lfs_objects(repo)
