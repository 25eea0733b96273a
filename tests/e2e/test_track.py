"""End to end: `git theta track` without patterns lists them; `git theta untrack` removes them."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import git, random_model, save_safetensors, theta


def test_track_without_patterns_lists_every_tracking_line(repo: Path, installed: Path, tmp_path: Path) -> None:
    (repo / "sub").mkdir()
    (repo / "sub" / ".gitattributes").write_text("*.ckpt filter=theta diff=theta merge=theta -text\n*.txt text\n")
    git("add", "sub/.gitattributes", cwd=repo)
    (repo / ".git" / "info" / "attributes").write_text("*.gguf filter=theta -text\n")
    (installed / ".config" / "git").mkdir(parents=True)
    (installed / ".config" / "git" / "attributes").write_text("# mine\n*.weights filter=theta\n")
    out = theta("track", cwd=repo).stdout.decode()
    global_file = os.path.relpath(installed / ".config" / "git" / "attributes", repo)
    assert out.splitlines() == [
        "*.safetensors  (.gitattributes:1)",
        "*.pt           (.gitattributes:2)",
        "*.npz          (.gitattributes:3)",
        "*.ckpt         (sub/.gitattributes:1)",
        "*.gguf         (.git/info/attributes:1)",
        f"*.weights      ({global_file}:2)",
    ]
    empty = tmp_path / "empty"
    git("init", "-q", str(empty), cwd=tmp_path)
    assert (
        theta("track", cwd=empty).stdout.decode()
        == f"*.weights  ({os.path.relpath(installed / '.config' / 'git' / 'attributes', empty)}:2)\n"
    )
    (installed / ".config" / "git" / "attributes").unlink()
    nothing = theta("track", cwd=empty)
    assert nothing.stdout == b"" and b"no tracked patterns" in nothing.stderr


def test_untrack_removes_our_attributes_and_keeps_the_rest(repo: Path) -> None:
    save_safetensors(repo / "model.safetensors", random_model())
    git("add", "model.safetensors", cwd=repo)
    git("commit", "-q", "-m", "model", cwd=repo)
    attributes = repo / ".gitattributes"
    attributes.write_text(attributes.read_text() + "*.bin filter=theta diff=theta merge=theta -text eol=lf\n")

    result = theta("untrack", "*.safetensors", "*.bin", cwd=repo)
    assert result.stdout.decode().splitlines() == [
        f"git-theta: '*.safetensors' no longer tracked (removed from {attributes})",
        f"git-theta: '*.bin' no longer tracked (removed from {attributes})",
    ]
    assert "model.safetensors stay stored as git-theta metadata" in result.stderr.decode()
    assert attributes.read_text() == (
        "*.pt filter=theta diff=theta merge=theta -text\n"
        "*.npz filter=theta diff=theta merge=theta -text\n"
        "*.bin -text eol=lf\n"
    )
    assert git("check-attr", "filter", "--", "x.safetensors", cwd=repo).stdout.endswith(b"unspecified\n")
    (repo / "new.safetensors").write_bytes(b"plain bytes, no longer cleaned")
    git("add", "new.safetensors", cwd=repo)
    assert git("show", ":new.safetensors", cwd=repo).stdout == b"plain bytes, no longer cleaned"

    theta("track", "*.safetensors", cwd=repo)
    assert theta("track", cwd=repo).stdout.decode().splitlines()[-1].startswith("*.safetensors  (.gitattributes:4)")


def test_untrack_refuses_a_pattern_it_does_not_track_and_writes_nothing(repo: Path) -> None:
    attributes = repo / ".gitattributes"
    before = attributes.read_bytes()
    result = theta("untrack", "*.pt", "*.bin", cwd=repo, check=False)
    assert result.returncode == 2 and attributes.read_bytes() == before
    assert result.stderr.decode() == (
        "git-theta: error: '*.bin' is not tracked by git-theta (git theta track lists the tracked patterns)\n"
    )
    (repo / "sub").mkdir()
    (repo / "sub" / ".gitattributes").write_text("*.ckpt filter=theta -text\n")
    git("add", "sub/.gitattributes", cwd=repo)
    elsewhere = theta("untrack", "*.ckpt", cwd=repo, check=False)
    assert elsewhere.returncode == 2
    assert (
        "'*.ckpt' is tracked by sub/.gitattributes:1, not by the top-level .gitattributes" in elsewhere.stderr.decode()
    )
