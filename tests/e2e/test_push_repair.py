"""End to end: pushing to a remote that lacks objects its refs do not reveal (a new URL, an LFS store left behind)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_remotes import commit_all, edit_tensor, status
from tests.helpers import git, lfs_objects, random_model, save_safetensors
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
