"""Helpers shared by the tests: a checked ``git`` runner and real checkpoint writers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np


def git(*args: str, cwd: Path | str, check: bool = True, input: bytes | None = None, env: dict | None = None):
    """Run git; on an unexpected exit code fail with the command, the code and both streams."""
    result = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, env={**os.environ, **(env or {})}
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout.decode(errors='replace')}\n"
            f"--- stderr ---\n{result.stderr.decode(errors='replace')}"
        )
    return result


def theta(*args: str, cwd: Path | str, check: bool = True, env: dict | None = None):
    """Run ``git theta ...`` like a user would."""
    return git("theta", *args, cwd=cwd, check=check, env=env)


def save_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write a real safetensors file with the safetensors library."""
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata=metadata)


def random_model(seed: int = 0, layers: int = 3, width: int = 64) -> dict[str, np.ndarray]:
    """A small float32 model with a few layers."""
    rng = np.random.default_rng(seed)
    model = {}
    for i in range(layers):
        model[f"layer{i}.weight"] = rng.standard_normal((width, width), dtype=np.float32)
        model[f"layer{i}.bias"] = rng.standard_normal((width,), dtype=np.float32)
    return model


def lfs_objects(repo: Path) -> set[str]:
    """The oids of all objects in a repository's local LFS store."""
    root = repo / ".git" / "lfs" / "objects"
    if not root.exists():
        root = repo / "lfs" / "objects"  # a bare repository
    return {p.name for p in root.glob("*/*/*") if p.is_file()}


def finish_gguf(writer, path: Path) -> bytes:
    """Write out a ``gguf.GGUFWriter`` whose metadata and tensors were added (header, key-values, tensors)."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()
