"""The examples the documentation marks as runnable run as written, in a fresh directory with git-theta installed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- example: tests/e2e/test_docs_examples.py runs this block as written -->"
BLOCK = re.compile(re.escape(MARKER) + r"\n```bash\n(.*?)\n```", re.DOTALL)


def examples() -> dict[str, str]:
    """Each marked block once (README.md repeats one of docs/), named by the first file that holds it."""
    found: dict[str, str] = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        assert text.count(MARKER) == len(BLOCK.findall(text)), f"{path.name}: a marker not followed by a bash block"
        for block in BLOCK.findall(text):
            found.setdefault(block, path.relative_to(ROOT).as_posix())
    return {name: block for block, name in found.items()}


def test_the_documentation_marks_the_sharded_lora_example() -> None:
    assert any("--update-path ../lora-adapter/" in block for block in examples().values())


@pytest.mark.parametrize("name", sorted(examples()))
def test_example_runs_as_written(name: str, installed: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    pytest.importorskip("transformers")
    script = examples()[name]
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp_path, capture_output=True)
    assert result.returncode == 0, f"{name}:\n{result.stdout.decode()}\n{result.stderr.decode()}"
    for repository in (path.parent for path in tmp_path.glob("*/.git")):  # every checkout it made stays clean
        status = subprocess.run(["git", "status", "--porcelain"], cwd=repository, capture_output=True, check=True)
        assert status.stdout == b"", f"{name}: {repository.name}: {status.stdout.decode()}"
    if "--update-type low-rank" in script:
        assert b"low-rank (depth 1)" in result.stdout
