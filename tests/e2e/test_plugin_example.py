"""End to end: the third-party plugin under plugins/ is pip-installed and its format goes through git like any other."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import git, lfs_objects, theta

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "git-theta-example-format"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example plugin installed with pip into a directory of its own (offline: no index, no build isolation)."""
    pytest.importorskip("setuptools", reason="building the example plugin offline needs setuptools in this venv")
    target, source = tmp_path_factory.mktemp("plugin-site"), tmp_path_factory.mktemp("plugin-source") / "plugin"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation"]
    result = subprocess.run([*command, "--target", str(target), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, f"pip install of the example plugin failed:\n{result.stdout}\n{result.stderr}"
    return str(target)


def test_third_party_format_through_add_commit_checkout(installed: Path, tmp_path: Path, plugin_path: str) -> None:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [plugin_path, os.environ.get("PYTHONPATH")]))}
    sys.path.insert(0, plugin_path)
    try:
        from git_theta_example_format import load, save
    finally:
        sys.path.remove(plugin_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    theta("track", "*.gtx", cwd=repo)
    rng = np.random.default_rng(0)
    model = {"embed.weight": rng.standard_normal((16, 8), dtype=np.float32), "head.bias": np.arange(8, dtype=np.int16)}
    save(str(repo / "model.gtx"), model)
    original = (repo / "model.gtx").read_bytes()

    git("add", ".gitattributes", "model.gtx", cwd=repo, env=env)
    git("commit", "-q", "-m", "gtx model", cwd=repo, env=env)
    stored = git("show", "HEAD:model.gtx", cwd=repo).stdout.decode()
    assert '"checkpoint_type": "gtx"' in stored and "embed.weight" in stored
    assert len(lfs_objects(repo)) == 2

    model["head.bias"] = model["head.bias"] + 1
    save(str(repo / "model.gtx"), model)
    git("commit", "-q", "-am", "change the bias", cwd=repo, env=env)
    assert len(lfs_objects(repo)) == 3  # only the changed tensor is stored again

    git("checkout", "-q", "HEAD~1", cwd=repo, env=env)
    assert (repo / "model.gtx").read_bytes() == original
    assert load(str(repo / "model.gtx"))["head.bias"].tolist() == list(range(8))
    assert git("status", "--porcelain", cwd=repo, env=env).stdout == b""

    # Without the plugin installed, git-theta says which plugin is missing instead of writing a wrong file.
    (repo / "model.gtx").unlink()
    failed = git("checkout", "--", "model.gtx", cwd=repo, check=False)
    assert failed.returncode != 0
    assert b"unknown checkpoints plugin 'gtx'" in failed.stderr
