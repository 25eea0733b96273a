"""The Python examples of docs/api.md and README.md run as written, in a repository holding what they name."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_sharded_model import save_bert
from tests.helpers import git, random_model, save_safetensors, theta

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(document: Path) -> list[str]:
    """The fenced python blocks of a markdown file that use the API."""
    blocks = re.findall(r"^```python\n(.*?)^```", document.read_text(), flags=re.S | re.M)
    return [block for block in blocks if "git_theta." in block]


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


@pytest.mark.parametrize("document", ["docs/api.md", "README.md"])
def test_api_examples_run_as_written(
    document: str, installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("torch")
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    theta("track", "*.safetensors", cwd=repo)
    save_bert(repo, "20KB", directory="bert")
    commit_all(repo, "bert")
    model = random_model(0)
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "v1")
    model["layer0.weight"] = model["layer0.weight"] * np.float32(1.01)
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "v2")
    monkeypatch.chdir(repo)

    blocks = python_blocks(ROOT / document)
    assert blocks, f"{document} shows no example of the API"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, document, "exec"), namespace)  # noqa: S102 - the documented example, as written
    out = capsys.readouterr().out
    if document == "docs/api.md":
        assert "<StoredCheckpoint model.safetensors at HEAD~1: 6 tensors, 1 file(s)>" in out
        assert "layer0.weight modified" in out and "torch.float32" in out
