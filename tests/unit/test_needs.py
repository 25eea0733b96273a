"""Unit tests need neither torch nor git-lfs: without them, those that do are skipped, saying what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.needs import STRICT

ROOT = Path(__file__).resolve().parents[2]
#: A sample that covers the shared fixtures, the support modules and tests that do and do not need torch.
SAMPLE = [
    "tests/unit/storage/test_lfs_batch.py",
    "tests/unit/storage/test_format_data.py",
    "tests/unit/checkpoints/test_detect.py",
    "tests/unit/test_metadata.py",
]


def _path_without(program: str, into: Path) -> str:
    """A PATH with every program of the current one except ``program`` (a directory of links)."""
    into.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for entry in Path(folder).glob("*") if Path(folder).is_dir() else ():
            link = into / entry.name
            if entry.name != program and not os.path.lexists(link):
                link.symlink_to(entry)
    return f"{Path(sys.executable).parent}{os.pathsep}{into}"


def test_unit_tests_run_without_torch_and_git_lfs(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    (blocked / "torch").mkdir(parents=True)
    (blocked / "torch" / "__init__.py").write_text("raise ImportError('torch is blocked for this test')\n")
    env = {key: value for key, value in os.environ.items() if key != STRICT}
    env["PYTHONPATH"] = os.pathsep.join([str(blocked), str(ROOT), env.get("PYTHONPATH", "")])
    env["PATH"] = _path_without("git-lfs", tmp_path / "bin")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist", *SAMPLE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "passed" in result.stdout and "needs the Python package 'torch'" in result.stdout, result.stdout[-3000:]
