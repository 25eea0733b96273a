"""End to end: progress on a terminal for long operations (add, checkout, clone, pull, push), nothing extra elsewhere.

A real pseudo-terminal stands for the user's: git hands its stderr to the filters it starts, so the filter's stderr
is a terminal exactly when git's is. GIT_PROGRESS_DELAY=0 (git's own setting) makes any add or checkout slow
enough for a meter; without it a meter waits a second.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

from tests.helpers import git, random_model, save_safetensors, theta
from tests.remotes import HttpRemote, LocalRemote

NOW = {"GIT_PROGRESS_DELAY": "0"}


def on_a_terminal(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``args`` with stdin, stdout and stderr on a pseudo-terminal; return its exit code and all it printed."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        args, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env={**os.environ, **(env or {})}
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(master)
    return process.returncode, seen.decode(errors="replace").replace("\r\n", "\n")


def commit_model(repo: Path) -> None:
    save_safetensors(repo / "model.safetensors", random_model(width=256))
    git("add", "model.safetensors", cwd=repo)
    git("commit", "-q", "-m", "model", cwd=repo)


def test_add_and_checkout_draw_a_meter_on_a_terminal(repo: Path) -> None:
    save_safetensors(repo / "model.safetensors", random_model(width=256))
    code, seen = on_a_terminal(["git", "add", "model.safetensors"], repo, NOW)
    assert code == 0, seen
    assert "git-theta: storing model.safetensors:" in seen and "\r" in seen
    final = [
        line for line in re.split(r"[\r\n]", seen) if line.startswith("git-theta: storing model.safetensors: 100% of ")
    ]
    assert final and final[0].endswith(" s, done.")
    git("commit", "-q", "-m", "model", cwd=repo)

    (repo / "model.safetensors").unlink()
    code, seen = on_a_terminal(["git", "checkout", "--", "model.safetensors"], repo, NOW)
    assert code == 0, seen
    final = [
        line for line in re.split(r"[\r\n]", seen) if line.startswith("git-theta: checking out model.safetensors: 100%")
    ]
    assert final and final[0].endswith(" s, done.")


def test_quick_work_or_no_terminal_prints_nothing_extra(repo: Path) -> None:
    save_safetensors(repo / "model.safetensors", random_model())
    code, seen = on_a_terminal(["git", "add", "model.safetensors"], repo)  # well under a second
    assert code == 0 and seen == ""
    git("commit", "-q", "-m", "model", cwd=repo)
    save_safetensors(repo / "model.safetensors", random_model(seed=1, width=256))
    assert git("add", "model.safetensors", cwd=repo, env=NOW).stderr == b""  # stderr is a pipe: no meter
    (repo / "model.safetensors").unlink()
    assert git("checkout", "--", "model.safetensors", cwd=repo, env=NOW).stderr == b""


def test_theta_add_and_pull_show_the_meters_of_git_and_git_lfs(
    repo: Path, remote: HttpRemote | LocalRemote, tmp_path: Path
) -> None:
    remote.add_to(repo)
    save_safetensors(repo / "model.safetensors", random_model(width=256))
    code, seen = on_a_terminal(["git", "theta", "add", "model.safetensors"], repo, NOW)
    assert code == 0 and "git-theta: storing model.safetensors: 100%" in seen, seen
    git("commit", "-q", "-m", "model", cwd=repo)
    code, seen = on_a_terminal(["git", "push", "origin", "main"], repo)
    assert code == 0 and "Uploading LFS objects: 100% (6/6)" in seen, seen

    clone = tmp_path / "clone"
    remote.clone(clone, "-c", "theta.lazy=true")
    code, seen = on_a_terminal(["git", "theta", "pull"], clone, NOW)
    assert code == 0, seen
    assert "Downloading LFS objects: 100% (6/6)" in seen and "git-theta: checking out model.safetensors: 100%" in seen
    assert "fetch: Fetching reference" not in seen  # git-theta's throw-away commit is no business of the user's
    assert seen.endswith("git-theta: model.safetensors: weights checked out\n")

    quiet = tmp_path / "quiet"
    remote.clone(quiet, "-c", "theta.lazy=true")
    pulled = theta("pull", cwd=quiet, env=NOW)
    assert pulled.stderr.decode() == "git-theta: downloading 6 tensor objects for 1 checkpoint(s)\n"


def test_a_clone_on_a_terminal_shows_the_download_and_the_checkout(repo: Path, tmp_path: Path) -> None:
    remote = LocalRemote.create(tmp_path)
    remote.add_to(repo)
    commit_model(repo)
    git("push", "-q", "origin", "main", cwd=repo)
    code, seen = on_a_terminal(["git", "clone", str(remote.path), str(tmp_path / "clone")], tmp_path, NOW)
    assert code == 0, seen
    assert "Downloading LFS objects: 100% (6/6)" in seen and "git-theta: checking out model.safetensors: 100%" in seen
    assert (tmp_path / "clone" / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
