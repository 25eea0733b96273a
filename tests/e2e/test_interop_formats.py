"""End to end: Flax msgpack and GGUF checkpoints through real git: add, commit, change one tensor, check out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import git, lfs_objects, theta

msgpack = pytest.importorskip("msgpack", reason="a test dependency: pip install -e '.[test]'")
gguf = pytest.importorskip("gguf", reason="a test dependency: pip install -e '.[test]'")


def flax_file(path: Path, bias: float) -> None:
    # flax.serialization's encoding: arrays as msgpack extension 1 holding (shape, dtype name, bytes).
    def ext(array: np.ndarray) -> msgpack.ExtType:
        return msgpack.ExtType(1, msgpack.packb((array.shape, array.dtype.name, array.tobytes()), use_bin_type=True))

    kernel = np.arange(64, dtype=np.float32).reshape(8, 8)
    tree = {"params": {"Dense_0": {"kernel": kernel, "bias": np.full(8, bias, np.float32)}}, "step": 3}
    path.write_bytes(msgpack.packb(tree, default=ext, strict_types=True))


def gguf_file(path: Path, bias: float) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_token_list(["a", "b"])
    writer.add_tensor("blk.0.weight", np.arange(64, dtype=np.float32).reshape(2, 32))
    weights = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
    writer.add_tensor("blk.0.q", gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q8_0), raw_dtype=8)
    writer.add_tensor("blk.0.bias", np.full(8, bias, np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_flax_and_gguf_round_trip_through_git(installed: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    theta("track", "*.msgpack", "*.gguf", cwd=repo)
    flax_file(repo / "model.msgpack", 0.0)
    gguf_file(repo / "model.gguf", 0.0)
    originals = {name: (repo / name).read_bytes() for name in ("model.msgpack", "model.gguf")}
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    assert b'"checkpoint_type": "flax"' in git("show", "HEAD:model.msgpack", cwd=repo).stdout
    assert b'"checkpoint_type": "gguf"' in git("show", "HEAD:model.gguf", cwd=repo).stdout
    before = lfs_objects(repo)
    assert len(before) == 4  # six tensors; the flax kernel and the GGUF weight have the same bytes: stored once

    flax_file(repo / "model.msgpack", 1.0)
    gguf_file(repo / "model.gguf", 1.0)
    git("commit", "-q", "-am", "new biases", cwd=repo)
    assert len(lfs_objects(repo) - before) == 2  # only the two changed biases

    git("checkout", "-q", "HEAD~1", cwd=repo)
    for name, data in originals.items():
        assert (repo / name).read_bytes() == data
    assert git("status", "--porcelain", cwd=repo).stdout == b""
