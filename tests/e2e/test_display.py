"""git diff, log and show never rebuild checkpoints: the smudge filter hands them the metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers import git, lfs_objects, random_model, save_safetensors


def test_git_diff_reads_objects_of_changed_tensors_only(repo: Path) -> None:
    model = random_model()
    save_safetensors(repo / "model.safetensors", model)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    before = lfs_objects(repo)
    model["layer2.bias"] = model["layer2.bias"] + np.float32(1)
    save_safetensors(repo / "model.safetensors", model)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "one tensor", cwd=repo)

    # Without the objects of the unchanged tensors, rebuilding either version would fail.
    changed = lfs_objects(repo) - before
    entries = git("show", "HEAD~1:model.safetensors", cwd=repo).stdout.decode()
    old_bias = next(line for line in entries.splitlines() if '"layer2.bias"' in line).split('"oid": "')[1][:64]
    for oid in lfs_objects(repo) - changed - {old_bias}:
        (repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).unlink()

    out = git("diff", "HEAD~1", "HEAD", cwd=repo).stdout.decode()
    changed_lines = [line for line in out.splitlines() if line.startswith(("+    ", "-    "))]
    assert changed_lines and all("layer2.bias" in line for line in changed_lines)
    assert git("show", "--ext-diff", "HEAD", cwd=repo).returncode == 0
