"""End to end: outside a repository, or for a name that is neither a revision nor a path, messages say so plainly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import git, random_model, save_safetensors, theta

OUTSIDE = "git-theta: error: not inside a git repository; run this in one (cd into it, or git init first)\n"


@pytest.mark.parametrize(
    "command",
    [["ls"], ["ls", "HEAD"], ["fsck"], ["gc"], ["push"], ["add", "model.safetensors"], ["status"], ["track"]],
    ids=" ".join,
)
def test_outside_a_repository_every_command_says_so(installed: Path, tmp_path: Path, command: list[str]) -> None:
    result = theta(*command, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.decode() == OUTSIDE and result.stdout == b""


@pytest.mark.parametrize("command", [["diff"], ["pull"], ["log", "x"], ["track", "*.pt"], ["merge", "a"]], ids=" ".join)
def test_commands_that_need_a_working_tree_say_so(installed: Path, tmp_path: Path, command: list[str]) -> None:
    outside = theta(*command, cwd=tmp_path, check=False)
    assert outside.returncode == 2 and outside.stderr.decode() == OUTSIDE
    git("init", "-q", "--bare", "bare.git", cwd=tmp_path)
    bare = theta(*command, cwd=tmp_path / "bare.git", check=False)
    assert bare.returncode == 2 and b"not inside a git working tree" in bare.stderr and b"bare" in bare.stderr


def test_unknown_revisions_and_paths_are_named(repo: Path, tmp_path: Path) -> None:
    git("init", "-q", "--bare", str(tmp_path / "remote.git"), cwd=tmp_path)
    git("remote", "add", "origin", str(tmp_path / "remote.git"), cwd=repo)
    save_safetensors(repo / "model.safetensors", random_model())
    git("add", "model.safetensors", cwd=repo)
    git("commit", "-q", "-m", "model", cwd=repo)
    expected = {
        ("ls", "nosuchrev"): "'nosuchrev' is neither a revision nor a path in the working tree",
        ("ls", "HEAD~3"): "'HEAD~3' is neither a revision nor a path in the working tree",
        ("ls", "HEAD", "nothing.safetensors"): "no tracked checkpoint matches nothing.safetensors at HEAD",
        ("diff", "nosuchrev"): "unknown revision or path not in the working tree: 'nosuchrev'",
        ("log", "nosuchrev", "--", "model.safetensors"): "unknown revision 'nosuchrev'",
        ("add", "nothing.safetensors"): "nothing.safetensors: no such file in the working tree",
        ("pull", "nothing.pt"): "matches nothing.pt: there is no such path in the working tree",
        ("status", "nothing.pt"): "nothing.pt: no such path in the working tree or the index",
        ("push", "origin", "nosuchrev"): "'nosuchrev' is not a branch, tag or commit of this repository",
    }
    for command, message in expected.items():
        result = theta(*command, cwd=repo, check=False)
        said = result.stderr.decode()
        assert result.returncode == 2, (command, said)
        assert said.startswith("git-theta: error: ") and message in said and said.count("\n") == 1, (command, said)
