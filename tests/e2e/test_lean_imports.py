"""The filter git starts imports only what the work at hand needs (its start is paid on every git command).

Python reports every import on stderr under ``PYTHONPROFILEIMPORTTIME``; git hands the filter its environment and
passes its stderr through, so a real ``git add`` and ``git checkout`` show what the filter imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)
import numpy as np
import pytest

from tests.helpers import git, save_safetensors

PROFILE = {"PYTHONPROFILEIMPORTTIME": "1"}
#: What a small file's add or checkout must not import: numpy (60 ms), importlib.metadata's scan of installed
#: packages (30 ms), the npz plugin's zipfile (the safetensors plugin is tried first), dataclasses (inspect) and
#: tempfile (shutil, random, bz2, lzma). The filters do without pathlib too, but an editable install's finder (as
#: in the development venv) imports it.
NOT_FOR_SMALL_FILES = {"numpy", "importlib.metadata", "zipfile", "dataclasses", "tempfile"}
#: What no filter imports: concurrent.futures imports logging (~10 ms); pipeline.Pool does without both.
NOT_FOR_ANY_FILE = {"concurrent.futures", "logging"}


def imported(result) -> set[str]:
    """The modules a command's Python processes imported (from ``-X importtime``'s lines on stderr)."""
    lines = result.stderr.decode(errors="replace").splitlines()
    return {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:") and "|" in line}


def test_a_small_file_is_added_and_checked_out_without_numpy(repo: Path) -> None:
    rng = np.random.default_rng(0)
    save_safetensors(repo / "small.safetensors", {"w": rng.standard_normal((16, 12), dtype=np.float32)})
    added = imported(git("add", "small.safetensors", cwd=repo, env=PROFILE))
    assert "git_theta.filters.clean" in added  # the filter ran, and reported its imports
    assert not (NOT_FOR_SMALL_FILES | NOT_FOR_ANY_FILE) & added
    git("commit", "-q", "-m", "small", cwd=repo)

    (repo / "small.safetensors").unlink()
    checked_out = imported(git("checkout", "--", "small.safetensors", cwd=repo, env=PROFILE))
    assert "git_theta.filters.smudge" in checked_out
    assert not (NOT_FOR_SMALL_FILES | NOT_FOR_ANY_FILE) & checked_out


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_fine_tune_is_stored_checked_out_and_diffed_without_ml_dtypes(repo: Path, dtype: str) -> None:
    # ml_dtypes (bf16, fp8) costs 0.6 s to import on a fresh install (ml_dtypes 0.7). A delta works on bit patterns,
    # and a bfloat16 widens to float32 by a shift: neither model pays it to store, rebuild or diff a fine-tune.
    rng = np.random.default_rng(1)
    weight = rng.standard_normal(1 << 18, dtype=np.float32) * np.float32(0.02)
    save_safetensors(repo / "model.safetensors", {"w": weight.astype(dtype)})
    git("add", "model.safetensors", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    tuned = (weight + rng.standard_normal(weight.shape, dtype=np.float32) * np.float32(1e-3)).astype(dtype)
    save_safetensors(repo / "model.safetensors", {"w": tuned})
    written = (repo / "model.safetensors").read_bytes()

    added = imported(git("add", "model.safetensors", cwd=repo, env=PROFILE))
    staged = json.loads(git("show", ":model.safetensors", cwd=repo).stdout)["tensors"]["w"]
    assert staged.get("update") == "delta"  # the path that differences bit patterns ran
    assert "numpy" in added and "ml_dtypes" not in added
    assert not NOT_FOR_ANY_FILE & added  # a 1 MiB tensor is stored on the thread pool

    (repo / "model.safetensors").unlink()
    checked_out = imported(git("checkout", "--", "model.safetensors", cwd=repo, env=PROFILE))
    assert "git_theta.filters.smudge" in checked_out and "ml_dtypes" not in checked_out
    assert (repo / "model.safetensors").read_bytes() == written

    git("commit", "-q", "-m", "tuned", cwd=repo)  # its statistics, in float64, come from bits alone too
    for command in (["theta", "diff", "HEAD~1", "HEAD"], ["log", "-p", "-1"]):
        shown = imported(git(*command, cwd=repo, env=PROFILE))
        assert "numpy" in shown and "ml_dtypes" not in shown, command


def test_a_few_changed_bfloat16_elements_are_stored_and_checked_out_as_sparse_without_ml_dtypes(repo: Path) -> None:
    weights = (np.random.default_rng(2).standard_normal(1 << 18, dtype=np.float32) * np.float32(0.02)).astype(
        "bfloat16"
    )
    save_safetensors(repo / "model.safetensors", {"w": weights})
    git("add", "model.safetensors", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    weights[::200] = 0  # a sparse update sets values: it only copies their bits
    save_safetensors(repo / "model.safetensors", {"w": weights})
    written = (repo / "model.safetensors").read_bytes()

    added = imported(git("add", "model.safetensors", cwd=repo, env=PROFILE))
    staged = json.loads(git("show", ":model.safetensors", cwd=repo).stdout)["tensors"]["w"]
    assert staged.get("update") == "sparse" and "ml_dtypes" not in added
    (repo / "model.safetensors").unlink()
    checked_out = imported(git("checkout", "--", "model.safetensors", cwd=repo, env=PROFILE))
    assert "git_theta.filters.smudge" in checked_out and "ml_dtypes" not in checked_out
    assert (repo / "model.safetensors").read_bytes() == written


def test_the_diff_command_loads_numpy_beside_its_git_queries() -> None:
    # git theta diff starts numpy's import on a thread of its own, then asks git what changed: its modules up to
    # the first comparison must not import numpy themselves, or the import runs first, alone.
    # Nor does it import concurrent.futures (with logging, ~10 ms): it compares on pipeline.Pool's threads.
    unwanted = sorted({"numpy", *NOT_FOR_ANY_FILE})
    code = f"import sys, git_theta.cli.diff, git_theta.diffs.targets; print(sorted({unwanted} & sys.modules.keys()))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert result.stdout.decode().strip() == "[]"
