"""Choosing the checkpoint plugin: an explicit name, then the content, then the extension."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import safetensors.numpy

from git_theta.checkpoints.base import CheckpointError
from git_theta.checkpoints.detect import detect
from git_theta.checkpoints.numpy import NpzCheckpoint
from git_theta.checkpoints.safetensors import SafetensorsCheckpoint
from git_theta.checkpoints.torch import TorchCheckpoint
from git_theta.plugins import PluginError
from git_theta.session.context import CHECKPOINT_TYPE_ENV
from tests.needs import TORCH, needs_module
from tests.unit.support import assert_one_line_error, clean_bytes, filter_context


def safetensors_file() -> bytes:
    return safetensors.numpy.save({"w": np.ones(3, np.float32)})


def torch_file() -> bytes:
    torch = needs_module("torch", TORCH)
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer)
    return buffer.getvalue()


def npz_file() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, w=np.ones(3))
    return buffer.getvalue()


def plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make, path, expected",
    [
        (safetensors_file, "model.safetensors", SafetensorsCheckpoint),
        (safetensors_file, "model.pt", SafetensorsCheckpoint),  # content beats a misleading extension
        (safetensors_file, "weights", SafetensorsCheckpoint),
        (torch_file, "model.pt", TorchCheckpoint),
        (torch_file, "model.npz", TorchCheckpoint),
        (torch_file, "pytorch_model.bin", TorchCheckpoint),
        (npz_file, "arrays.npz", NpzCheckpoint),
        (npz_file, "arrays.pth", NpzCheckpoint),
        (lambda: b"garbage" * 10, "x.safetensors", SafetensorsCheckpoint),  # its reader says what is wrong
        (lambda: b"garbage" * 10, "x.BIN", TorchCheckpoint),
        (lambda: b"garbage" * 10, "x.npz", NpzCheckpoint),
    ],
)
def test_detect(make, path: str, expected: type) -> None:
    assert detect(path, make()[:4096]) is expected


@pytest.mark.parametrize("make", [lambda: b"garbage" * 10, plain_zip, lambda: b"\x00" * 3])
def test_unrecognised_content_without_a_known_extension(make) -> None:
    with pytest.raises(CheckpointError) as excinfo:
        detect("dir/file.zip", make()[:4096])
    assert_one_line_error(excinfo, "dir/file.zip")
    for name in ("safetensors", "torch", "npz"):
        assert name in str(excinfo.value)


def test_plain_zip_through_clean() -> None:
    with filter_context() as context, pytest.raises(CheckpointError) as excinfo:
        clean_bytes(plain_zip(), "data/archive.zip", context)
    assert_one_line_error(excinfo, "data/archive.zip")


def test_explicit_name_wins() -> None:
    assert detect("model.safetensors", safetensors_file(), explicit="npz") is NpzCheckpoint


def test_unknown_explicit_name_lists_the_available_ones() -> None:
    with pytest.raises(PluginError) as excinfo:
        detect("model.onnx", b"", explicit="onnx")
    message = str(excinfo.value)
    assert "onnx" in message and "safetensors" in message and "torch" in message and "npz" in message


def test_explicit_name_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    needs_module("torch", TORCH)  # without it, reading as torch fails earlier, saying to install it
    monkeypatch.setenv(CHECKPOINT_TYPE_ENV, "torch")
    with filter_context() as context, pytest.raises(CheckpointError) as excinfo:
        clean_bytes(safetensors_file(), "model.safetensors", context)  # read as torch, as asked: not a torch file
    assert_one_line_error(excinfo, "model.safetensors")
