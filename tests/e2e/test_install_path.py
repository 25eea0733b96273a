"""End to end: git keeps finding git-theta when its virtual environment is not active (it is not on PATH)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.helpers import git, random_model, save_safetensors, theta


def without_git_theta() -> dict[str, str]:
    """The environment with every PATH entry that holds git-theta removed: a shell where the venv is not active."""
    entries = [entry for entry in os.environ["PATH"].split(os.pathsep) if not (Path(entry) / "git-theta").exists()]
    path = os.pathsep.join(entries)
    assert shutil.which("git-theta", path=path) is None and shutil.which("git-lfs", path=path) is not None
    return {"PATH": path}


def test_every_git_command_works_with_the_environment_inactive(installed: Path, tmp_path: Path) -> None:
    said = theta("install", cwd=installed)
    assert f"git-theta: git will run {shutil.which('git-theta')}" in said.stdout.decode()
    env = without_git_theta()
    remote, repo, clone = tmp_path / "remote.git", tmp_path / "repo", tmp_path / "clone"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path, env=env)
    git("init", "-q", str(repo), cwd=tmp_path, env=env)
    theta("track", "*.safetensors", cwd=repo)  # the one step with git-theta on PATH: it installs the hook
    git("remote", "add", "origin", str(remote), cwd=repo, env=env)
    model = random_model()
    save_safetensors(repo / "model.safetensors", model)
    git("add", "-A", cwd=repo, env=env)  # the clean filter
    git("commit", "-q", "-m", "base", cwd=repo, env=env)
    base = (repo / "model.safetensors").read_bytes()
    model["layer0.bias"] = model["layer0.bias"] + 1
    save_safetensors(repo / "model.safetensors", model)
    git("commit", "-q", "-am", "change one tensor", cwd=repo, env=env)
    git("push", "-q", "origin", "main", cwd=repo, env=env)  # the pre-push hook uploads the objects

    git("clone", "-q", str(remote), str(clone), cwd=tmp_path, env=env)  # smudge, with downloads
    assert (clone / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
    shown = git("diff", "HEAD~1", "HEAD", cwd=clone, env=env).stdout.decode()  # the diff driver
    assert "layer0.bias" in shown
    assert "layer0.bias" in git("log", "-p", "-1", cwd=clone, env=env).stdout.decode()  # textconv
    git("checkout", "-q", "HEAD~1", cwd=clone, env=env)
    assert (clone / "model.safetensors").read_bytes() == base
    git("checkout", "-q", "main", cwd=clone, env=env)
    git("commit", "-q", "--allow-empty", "-m", "from the clone", cwd=clone, env=env)
    git("push", "-q", "origin", "main", cwd=clone, env=env)  # the hook the filter installed in the clone


def test_a_hook_whose_program_is_gone_says_what_to_do(repo: Path, tmp_path: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text(hook.read_text().replace(shutil.which("git-theta"), "/nowhere/git-theta"))
    git("init", "-q", "--bare", str(tmp_path / "remote.git"), cwd=tmp_path)
    git("remote", "add", "origin", str(tmp_path / "remote.git"), cwd=repo)
    pushed = git("push", "-q", "origin", "main", cwd=repo, env=without_git_theta(), check=False)
    assert pushed.returncode != 0  # git push exits 1 whatever the hook's status
    assert b"git-theta is neither at /nowhere/git-theta nor on PATH; this pre-push hook needs it" in pushed.stderr
    git("push", "-q", "origin", "main", cwd=repo)  # with git-theta on PATH, the hook falls back to it
