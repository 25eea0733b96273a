"""End to end: what a push or a clone does when the LFS server is down or serves a corrupt object."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import git, lfs_objects, random_model, save_safetensors
from tests.remotes import HttpRemote


def commit_model(repo: Path) -> bytes:
    save_safetensors(repo / "model.safetensors", random_model())
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    return (repo / "model.safetensors").read_bytes()


def largest_object(repo: Path) -> str:
    return max((repo / ".git" / "lfs" / "objects").glob("*/*/*"), key=lambda path: path.stat().st_size).name


def error_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode(errors="replace").splitlines() if line.startswith("git-theta: error:")]


def test_push_fails_clearly_while_the_server_is_down_and_works_once_it_is_back(
    repo: Path, own_http_remote: HttpRemote
) -> None:
    own_http_remote.add_to(repo)
    commit_model(repo)
    own_http_remote.server.stop()

    failed = git("push", "origin", "main", cwd=repo, check=False)
    assert failed.returncode != 0
    [message] = error_lines(failed.stderr)
    assert "uploading 6 tensor object(s) to 'origin' failed" in message and "connection refused" in message.lower()
    assert git("ls-remote", str(own_http_remote.path), cwd=repo).stdout == b""  # the refs did not move

    own_http_remote.server.start()
    git("push", "-q", "origin", "main", cwd=repo)
    assert own_http_remote.objects() == lfs_objects(repo)
    assert git("ls-remote", str(own_http_remote.path), cwd=repo).stdout != b""


def test_corrupt_object_on_the_server_fails_the_clone_cleanly_until_repaired(
    repo: Path, http_remote: HttpRemote, tmp_path: Path
) -> None:
    http_remote.add_to(repo)
    original = commit_model(repo)
    git("push", "-q", "origin", "main", cwd=repo)
    victim = http_remote.object_path(largest_object(repo))
    good = victim.read_bytes()
    victim.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))  # same size: only the hash can tell

    clone = tmp_path / "clone"
    failed = http_remote.clone(clone, check=False)
    assert failed.returncode != 0
    [message] = error_lines(failed.stderr)
    assert "model.safetensors" in message and victim.name[:12] in message
    assert not (clone / "model.safetensors").exists()  # never a half-written checkpoint
    assert not (clone / ".git" / "lfs" / "objects" / victim.name[:2] / victim.name[2:4] / victim.name).exists()

    victim.write_bytes(good)
    git("reset", "-q", "--hard", "HEAD", cwd=clone)
    assert (clone / "model.safetensors").read_bytes() == original
    assert git("status", "--porcelain", cwd=clone).stdout == b""


def test_server_dying_mid_upload_fails_the_push_and_a_retry_succeeds(repo: Path, own_http_remote: HttpRemote) -> None:
    own_http_remote.add_to(repo)
    commit_model(repo)
    server = own_http_remote.server
    server.stop()
    server.start(die_after_bytes=1)  # the server process dies halfway through the first upload

    failed = git("push", "origin", "main", cwd=repo, check=False)
    assert failed.returncode != 0
    [message] = error_lines(failed.stderr)
    assert "uploading" in message and "failed" in message
    assert git("ls-remote", str(own_http_remote.path), cwd=repo).stdout == b""  # the refs did not move

    server.stop()
    server.start()
    git("push", "-q", "origin", "main", cwd=repo)
    assert own_http_remote.objects() == lfs_objects(repo)


def test_server_dying_mid_download_leaves_no_checkpoint_and_a_retry_succeeds(
    repo: Path, own_http_remote: HttpRemote, tmp_path: Path
) -> None:
    own_http_remote.add_to(repo)
    original = commit_model(repo)
    git("push", "-q", "origin", "main", cwd=repo)
    server = own_http_remote.server
    server.stop()
    server.start(die_after_bytes=1)  # the server process dies halfway through the first download

    clone = tmp_path / "clone"
    failed = own_http_remote.clone(clone, check=False)
    assert failed.returncode != 0
    [message] = error_lines(failed.stderr)
    assert "model.safetensors" in message and "could not be downloaded" in message
    assert not (clone / "model.safetensors").exists()  # never a half-written checkpoint

    server.stop()
    server.start()
    git("reset", "-q", "--hard", "HEAD", cwd=clone)
    assert (clone / "model.safetensors").read_bytes() == original
    assert git("status", "--porcelain", cwd=clone).stdout == b""
