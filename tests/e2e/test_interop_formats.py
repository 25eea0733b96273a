"""End to end: Flax msgpack and GGUF checkpoints through real git: add, commit, change one tensor, check out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import finish_gguf, git, lfs_objects, theta

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
    finish_gguf(writer, path)


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


def big_vocabulary_gguf(path: Path, tensors: dict[str, np.ndarray]) -> bytes:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list([f"token-{index}" for index in range(20_000)])
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    return finish_gguf(writer, path)


def test_a_merge_that_adds_tensors_to_a_large_gguf_keeps_its_header(installed: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    theta("track", "*.gguf", cwd=repo)
    base = {"blk.0.weight": np.arange(64, dtype=np.float32).reshape(2, 32)}
    big_vocabulary_gguf(repo / "model.gguf", base)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    git("checkout", "-q", "-b", "side", cwd=repo)
    big_vocabulary_gguf(repo / "model.gguf", {**base, "blk.1.side": np.ones(8, np.float32)})
    git("commit", "-q", "-am", "side adds a tensor", cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    big_vocabulary_gguf(repo / "model.gguf", {**base, "blk.1.main": np.zeros(4, np.float16)})
    git("commit", "-q", "-am", "main adds another", cwd=repo)

    git("merge", "-q", "--no-edit", "side", cwd=repo)  # no tensor conflicts: the header is rebuilt for both
    reader = gguf.GGUFReader(str(repo / "model.gguf"))
    assert sorted(tensor.name for tensor in reader.tensors) == ["blk.0.weight", "blk.1.main", "blk.1.side"]
    tokens = reader.fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == 20_000 and bytes(tokens.parts[tokens.data[-1]]) == b"token-19999"
    assert "$object" in json.loads(git("show", "HEAD:model.gguf", cwd=repo).stdout)["format"]["header"]
    assert git("status", "--porcelain", cwd=repo).stdout == b""


def test_a_large_gguf_header_is_one_object_sent_once(installed: Path, tmp_path: Path) -> None:
    """A 20,000-token vocabulary: the metadata in Git stays small, the header travels through the remote as one
    object, and a commit that changes only a tensor stores and sends nothing more for the header."""
    from tests.remotes import LocalRemote

    remote = LocalRemote.create(tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    theta("track", "*.gguf", cwd=repo)
    remote.add_to(repo)

    def write(bias: float) -> bytes:
        weight = np.arange(64, dtype=np.float32).reshape(2, 32)
        return big_vocabulary_gguf(
            repo / "model.gguf", {"blk.0.weight": weight, "blk.0.bias": np.full(8, bias, np.float16)}
        )

    first = write(0.0)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    metadata = git("show", "HEAD:model.gguf", cwd=repo).stdout
    assert len(first) > 300_000 and len(metadata) < 2_000, len(metadata)
    header = json.loads(metadata)["format"]["header"]["$object"]
    assert " in 3 objects)" in theta("ls", cwd=repo).stdout.decode()  # the two tensors and the header
    git("push", "-q", "origin", "HEAD:main", cwd=repo)
    assert header["oid"] in remote.objects()

    sent = remote.objects()
    second = write(1.0)
    git("commit", "-q", "-am", "new bias", cwd=repo)
    assert json.loads(git("show", "HEAD:model.gguf", cwd=repo).stdout)["format"]["header"]["$object"] == header
    git("push", "-q", "origin", "HEAD:main", cwd=repo)
    assert len(remote.objects() - sent) == 1  # the bias only

    clone = tmp_path / "clone"
    remote.clone(clone)
    assert (clone / "model.gguf").read_bytes() == second
    git("checkout", "-q", "HEAD~1", cwd=clone)
    assert (clone / "model.gguf").read_bytes() == first
    # The weight, both biases and the header: all referenced, none removable.
    assert "4 referenced tensor object(s) present and intact" in theta("fsck", cwd=clone).stdout.decode()
    assert "would remove 0 unreferenced" in theta("gc", "--dry-run", cwd=clone).stdout.decode()


def test_diffs_of_quantized_gguf_tensors_compare_their_dequantized_values(installed: Path, tmp_path: Path) -> None:
    """A Q8_0 tensor is stored as U8 blocks; its diff statistics are of the values the blocks stand for."""
    from gguf.quants import dequantize, quantize

    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    theta("track", "*.gguf", cwd=repo)
    weights = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
    q8 = gguf.GGMLQuantizationType.Q8_0
    blocks = {}
    for step, shift in enumerate((0.0, 0.01)):
        blocks[step] = quantize(weights + np.float32(shift), q8)
        writer = gguf.GGUFWriter(str(repo / "model.gguf"), "llama")
        writer.add_tensor("blk.0.q", blocks[step], raw_dtype=q8)
        finish_gguf(writer, repo / "model.gguf")
        git("add", "model.gguf", cwd=repo)
        git("commit", "-q", "-m", f"v{step}", cwd=repo)

    report = json.loads(theta("diff", "HEAD~1", "HEAD", "--format", "json", cwd=repo).stdout)
    (tensor,) = report["checkpoints"][0]["tensors"]
    assert tensor["old"] == tensor["new"] == {"dtype": "Q8_0", "shape": [4, 256]}
    old, new = (dequantize(blocks[step], q8).astype(np.float32) for step in (0, 1))
    changed = old.view(np.uint32) != new.view(np.uint32)
    delta = np.where(changed, new.astype(np.float64) - old, 0.0)
    assert tensor["changed"] == int(changed.sum()) and tensor["elements"] == 1024
    assert tensor["l2"] == pytest.approx(float(np.linalg.norm(delta)), rel=1e-9)
    assert tensor["rel"] == pytest.approx(
        float(np.linalg.norm(delta) / np.linalg.norm(old.astype(np.float64))), rel=1e-9
    )
    shown = git("show", "HEAD", cwd=repo).stdout.decode()  # textconv: the commit's change, in values too
    assert f"changed {int(changed.sum())}/1024 " in shown
