"""End to end: install, uninstall, track, add and ls, as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

from tests.helpers import git, random_model, save_safetensors, theta


def config(key: str, cwd: Path, scope: str = "--global") -> str:
    return git("config", scope, "--get", key, cwd=cwd, check=False).stdout.decode().strip()


def test_install_writes_the_filter_config(isolated_git: Path) -> None:
    theta("install", cwd=isolated_git)
    program = shutil.which("git-theta")  # by its absolute path: git finds it outside the virtual environment too
    assert config("filter.theta.process", isolated_git) == f"{program} filter-process"
    assert config("filter.theta.clean", isolated_git) == f"{program} clean %f"
    assert config("filter.theta.smudge", isolated_git) == f"{program} smudge %f"
    assert config("filter.theta.required", isolated_git) == "true"
    theta("install", cwd=isolated_git)  # idempotent
    assert git("config", "--global", "--get-all", "filter.theta.process", cwd=isolated_git).stdout.count(b"\n") == 1

    theta("uninstall", cwd=isolated_git)
    assert config("filter.theta.process", isolated_git) == ""


def test_install_local_configures_only_the_repository(isolated_git: Path, tmp_path: Path) -> None:
    git("init", "-q", "r", cwd=tmp_path)
    theta("install", "--local", cwd=tmp_path / "r")
    assert config("filter.theta.process", tmp_path / "r", "--local") == f"{shutil.which('git-theta')} filter-process"
    assert config("filter.theta.process", tmp_path / "r") == ""
    outside = theta("install", "--local", cwd=tmp_path, check=False)
    assert outside.returncode == 2 and b"needs a git repository" in outside.stderr


def test_install_without_git_lfs_says_how_to_get_it(isolated_git: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink("/usr/bin/git", bin_dir / "git")
    os.symlink(Path(os.environ["PATH"].split(os.pathsep)[0]) / "git-theta", bin_dir / "git-theta")
    result = git("theta", "install", cwd=isolated_git, check=False, env={"PATH": str(bin_dir)})
    assert result.returncode == 1
    assert b"git-lfs is not installed; install it" in result.stderr
    assert b"Traceback" not in result.stderr


def test_track_is_idempotent_and_matches_subdirectories(repo: Path) -> None:
    before = (repo / ".gitattributes").read_text()
    assert before.count("*.safetensors filter=theta diff=theta merge=theta -text\n") == 1
    out = theta("track", "*.safetensors", "my model.bin", cwd=repo).stdout.decode()
    assert "already tracked" in out and "now tracked" in out
    text = (repo / ".gitattributes").read_text()
    assert text.count("*.safetensors filter=theta") == 1
    assert "my[[:space:]]model.bin filter=theta diff=theta merge=theta -text\n" in text

    (repo / "a" / "b").mkdir(parents=True)
    save_safetensors(repo / "a" / "b" / "deep.safetensors", random_model())
    save_safetensors(repo / "my model.bin", random_model())
    git("add", "-A", cwd=repo)
    assert git("show", ":a/b/deep.safetensors", cwd=repo).stdout.startswith(b"{")
    assert git("show", ":my model.bin", cwd=repo).stdout.startswith(b"{")


def test_track_refuses_patterns_that_would_inject_attributes_lines(repo: Path) -> None:
    before = (repo / ".gitattributes").read_bytes()
    for pattern, why in [
        ("*.bin\n*.txt", "contains the control character '\\n'"),
        ("*.bin\r*.txt", "contains the control character '\\r'"),
        ("[attr]binary", "is not a file pattern"),
        ("#x", "would be read by git as a comment"),
        ("!x", "would be read by git as a negative pattern"),
    ]:
        refused = theta("track", "*.npy", pattern, cwd=repo, check=False)
        assert refused.returncode == 2, pattern
        message = refused.stderr.decode()
        assert message.startswith("git-theta: error: ") and repr(pattern) in message and why in message
        assert refused.stderr.count(b"\n") == 1 and refused.stdout == b""
        assert (repo / ".gitattributes").read_bytes() == before  # not even the good pattern is written
    (repo / "notes.txt").write_text("notes\n")
    assert git("check-attr", "filter", "--", "notes.txt", cwd=repo).stdout == b"notes.txt: filter: unspecified\n"

    theta("track", "a\tb.bin", cwd=repo)  # git splits fields at tabs too: escaped like a space
    assert (
        (repo / ".gitattributes").read_text().endswith("a[[:space:]]b.bin filter=theta diff=theta merge=theta -text\n")
    )
    assert git("check-attr", "filter", "--", "a\tb.bin", cwd=repo).stdout.endswith(b": filter: theta\n")


def test_hooks_chain_to_existing_hooks_and_honour_core_hooks_path(installed: Path, tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git("init", "-q", str(repo), cwd=tmp_path)
    hooks = repo / "custom-hooks"
    hooks.mkdir()
    git("config", "core.hooksPath", str(hooks), cwd=repo)
    existing = hooks / "pre-push"
    existing.write_text(
        '#!/bin/sh\necho "other tool ran with $1" >> "$(dirname "$0")/ran.log"\ncat >> "$(dirname "$0")/ran.log"\n'
    )
    existing.chmod(0o755)

    theta("track", "*.safetensors", cwd=repo)
    assert "git-theta hook" in (hooks / "pre-push").read_text()
    assert (hooks / "pre-push.theta-chained").read_text().startswith("#!/bin/sh\necho")
    assert (hooks / "pre-push").stat().st_mode & stat.S_IXUSR
    theta("track", "*.pt", cwd=repo)  # reinstalling must not chain to ourselves
    assert "git-theta hook" not in (hooks / "pre-push.theta-chained").read_text()

    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", str(remote), cwd=repo)
    save_safetensors(repo / "model.safetensors", random_model())
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    git("push", "-q", "origin", "main", cwd=repo)
    log = (hooks / "ran.log").read_text()
    assert "other tool ran with origin" in log and "refs/heads/main" in log

    theta("uninstall", cwd=repo)
    assert (hooks / "pre-push").read_text().startswith("#!/bin/sh\necho")
    assert not (hooks / "pre-push.theta-chained").exists()


def test_a_failing_chained_hook_stops_the_push(installed: Path, tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git("init", "-q", str(repo), cwd=tmp_path)
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    theta("track", "*.safetensors", cwd=repo)
    git("init", "-q", "--bare", str(tmp_path / "remote.git"), cwd=tmp_path)
    git("remote", "add", "origin", str(tmp_path / "remote.git"), cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", "x", cwd=repo)
    assert git("push", "-q", "origin", "main", cwd=repo, check=False).returncode != 0


def test_ls_lists_checkpoints_and_tensors(repo: Path) -> None:
    model = random_model(layers=2, width=32)
    save_safetensors(repo / "model.safetensors", model)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)

    out = theta("ls", cwd=repo).stdout.decode()
    assert out.startswith("model.safetensors  (safetensors, 4 tensors, 8.2 KiB, stored ")
    row = next(line for line in out.splitlines() if "layer0.weight" in line).split()
    assert row[1:4] == ["F32", "32x32", "4096"]
    assert 0 < int(row[4]) <= 4096 + 200

    listing = json.loads(theta("ls", "HEAD", "model.safetensors", "--json", cwd=repo).stdout)
    entry = listing["model.safetensors"]["tensors"]["layer1.bias"]
    assert entry["dtype"] == "F32" and entry["shape"] == [32] and entry["nbytes"] == 128

    missing = theta("ls", "HEAD", "nothing.safetensors", cwd=repo, check=False)
    assert missing.returncode == 2 and b"no tracked checkpoint matches" in missing.stderr


def test_theta_add_refuses_while_another_git_command_holds_the_index(repo: Path) -> None:
    save_safetensors(repo / "model.safetensors", random_model())
    lock = repo / ".git" / "index.lock"
    lock.write_bytes(b"")  # as a running (or crashed) git command leaves it
    result = theta("add", "model.safetensors", cwd=repo, check=False)
    message = result.stderr.decode()
    assert result.returncode != 0 and "another git command is running" in message and str(lock) in message
    assert message.count("\n") == 1 and "Traceback" not in message
    assert lock.exists()  # not ours to remove
    lock.unlink()
    assert git("diff", "--cached", "--name-only", cwd=repo).stdout == b""  # nothing was staged
