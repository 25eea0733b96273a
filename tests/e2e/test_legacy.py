"""End to end: repositories made by the real Git-Theta 0.2.0, cloned, checked out and migrated with our tool.

The repositories in tests/legacy/fixtures were written by the old tool itself (tests/legacy/make_fixtures.py),
with the tensors its own checkout of every commit gave; the live test builds them afresh when a virtual
environment with git-theta 0.2.0 is named by $GIT_THETA_LEGACY_VENV (tests/legacy/make_legacy_venv.sh).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import git, theta
from tests.legacy import make_fixtures

pytest.importorskip("tensorstore", reason="reading Git-Theta 0.2 objects needs tensorstore: pip install -e '.[test]'")
pytest.importorskip("msgpack", reason="reading Git-Theta 0.2 objects needs msgpack: pip install -e '.[test]'")

FIXTURES = Path(__file__).resolve().parents[1] / "legacy" / "fixtures"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
READERS = {"torch": make_fixtures.load_torch, "safetensors": make_fixtures.load_safetensors}


def make_remote(source: Path, name: str, tmp_path: Path) -> Path:
    """A bare repository holding the old tool's history and LFS objects, as a remote it pushed to would."""
    remote = tmp_path / f"{name}.git"
    git("clone", "-q", "--bare", str(source / f"{name}.bundle"), str(remote), cwd=tmp_path)
    shutil.copytree(source / f"{name}-lfs" / "objects", remote / "lfs" / "objects")
    return remote


def clone(remote: Path, tmp_path: Path, *options: str) -> Path:
    """Clone with our tool (its filter checks the legacy checkpoint out)."""
    target = tmp_path / "clone"
    git("clone", "-q", *options, remote.as_uri() if options else str(remote), str(target), cwd=tmp_path)
    return target


def tensors(path: Path, name: str) -> dict[str, dict]:
    """dtype, shape and SHA-256 of every tensor in a checkpoint file."""
    return {key: make_fixtures.tensor_record(value) for key, value in READERS[name](path).items()}


def assert_clean(repo: Path, file: str) -> None:
    """``git status`` is clean, also when git must run the clean filter again (the file's stat data changed)."""
    assert git("status", "--porcelain", cwd=repo).stdout == b""
    (repo / file).touch()
    assert git("status", "--porcelain", cwd=repo).stdout == b""


def check_commits(repo: Path, expected: dict, name: str, records: list[dict] | None = None) -> None:
    """Each commit checks out to the tensors the old tool's own checkout gave (and, here, to the same bytes)."""
    file = expected["file"]
    for record in expected["commits"] if records is None else records:
        git("checkout", "-q", record["commit"], cwd=repo)
        assert tensors(repo / file, name) == record["tensors"], record["message"]
        assert hashlib.sha256((repo / file).read_bytes()).hexdigest() == record["file_sha256"], record["message"]
    # Re-cleaning a PyTorch file costs a second for importing torch: git status is checked at the last commit only.
    assert_clean(repo, file)
    git("checkout", "-q", "main", cwd=repo)


@pytest.mark.parametrize("name", ["torch", "safetensors"])
def test_clone_checks_out_every_commit_as_the_old_tool_did(installed: Path, tmp_path: Path, name: str) -> None:
    repo = clone(make_remote(FIXTURES, name, tmp_path), tmp_path)
    assert_clean(repo, EXPECTED[name]["file"])
    # For PyTorch (a second per checkout, importing torch): the base, the low-rank update, and the ia3 update of
    # a sparse update, which between them rebuild every intermediate value.
    commits = EXPECTED[name]["commits"]
    check_commits(repo, EXPECTED[name], name, commits[0::2] if name == "torch" else commits)


def test_migrate_commits_our_format_and_keeps_history_readable(installed: Path, tmp_path: Path) -> None:
    expected = EXPECTED["torch"]
    repo = clone(make_remote(FIXTURES, "torch", tmp_path), tmp_path)
    # What the old tool left in a repository it worked in: its global commands and its hooks.
    git("config", "--global", "diff.theta.command", "git-theta-diff", cwd=repo)
    hooks = repo / ".git" / "hooks"
    for hook in ("post-commit", "pre-push"):
        (hooks / hook).write_text(f'#!/bin/sh\ngit theta {hook} "$@"\n')
        (hooks / hook).chmod(0o755)

    result = theta("migrate", "--commit", cwd=repo)
    assert b"model.pt: migrated (5 tensors" in result.stdout
    assert b"removed Git-Theta 0.2's hooks" in result.stderr
    assert git("config", "--global", "diff.theta.command", cwd=repo).stdout.strip() == b"git-theta diff-driver"
    assert not (hooks / "post-commit").exists() and "git-theta hook" in (hooks / "pre-push").read_text()
    assert git("show", "HEAD:model.pt", cwd=repo).stdout.startswith(b'{\n  "git_theta_metadata": ')
    assert tensors(repo / "model.pt", "torch") == expected["commits"][-1]["tensors"]
    assert_clean(repo, "model.pt")
    assert b"no checkpoint stored by Git-Theta 0.2" in theta("migrate", cwd=repo).stderr

    # Going forward: a change is stored in our format; the old commits still check out as before.
    model = make_fixtures.load_torch(repo / "model.pt")
    model["b1"] = model["b1"] + np.float32(1)
    make_fixtures.save_torch(repo / "model.pt", model)
    git("commit", "-q", "-am", "fine-tuned", cwd=repo)
    assert b'"b1": {"dtype": "F32"' in git("show", "HEAD:model.pt", cwd=repo).stdout
    check_commits(repo, expected, "torch", expected["commits"][-1:])


def test_changed_legacy_checkpoint_is_added_in_our_format(installed: Path, tmp_path: Path) -> None:
    repo = clone(make_remote(FIXTURES, "safetensors", tmp_path), tmp_path)
    model = make_fixtures.load_safetensors(repo / "model.safetensors")
    model["gain"] = model["gain"] * 2
    make_fixtures.save_safetensors(repo / "model.safetensors", model)
    assert git("status", "--porcelain", cwd=repo).stdout == b" M model.safetensors\n"
    git("add", "model.safetensors", cwd=repo)
    assert git("show", ":model.safetensors", cwd=repo).stdout.startswith(b'{\n  "git_theta_metadata": ')


def test_checkout_without_weights_keeps_legacy_metadata(installed: Path, tmp_path: Path) -> None:
    repo = clone(make_remote(FIXTURES, "torch", tmp_path), tmp_path, "-c", "theta.lazy=true")
    assert (repo / "model.pt").read_bytes() == git("show", "HEAD:model.pt", cwd=repo).stdout
    assert_clean(repo, "model.pt")
    theta("migrate", "--commit", cwd=repo)  # works from the metadata alone: objects are downloaded as needed
    assert_clean(repo, "model.pt")
    assert (repo / "model.pt").read_bytes().startswith(b'{\n  "git_theta_metadata": ')


def one_error_line(stderr: bytes) -> str:
    """The single git-theta error line of a failed command (and no traceback)."""
    text = stderr.decode(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("git-theta: ")]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_corrupt_or_missing_legacy_object_fails_with_one_line(installed: Path, tmp_path: Path) -> None:
    remote = make_remote(FIXTURES, "torch", tmp_path)
    repo = clone(remote, tmp_path)
    low_rank = next((repo / ".git" / "lfs" / "objects").glob("89/33/*"))  # the low-rank update of w1
    low_rank.chmod(0o644)
    low_rank.write_bytes(b"not an object")
    (repo / "model.pt").unlink()
    failed = git("checkout", "--", "model.pt", cwd=repo, check=False)
    assert failed.returncode != 0
    assert "is corrupt" in one_error_line(failed.stderr) and "89338312c497" in one_error_line(failed.stderr)

    low_rank.unlink()
    shutil.rmtree(remote / "lfs" / "objects" / "89")
    failed = git("checkout", "--", "model.pt", cwd=repo, check=False)
    assert failed.returncode != 0 and "could not be downloaded" in one_error_line(failed.stderr)
    assert not (repo / "model.pt").exists()


def test_shallow_clone_says_which_commit_an_update_needs(installed: Path, tmp_path: Path) -> None:
    failed = git(
        "clone", "-q", "--depth", "1", make_remote(FIXTURES, "torch", tmp_path).as_uri(), "c", cwd=tmp_path, check=False
    )
    assert "git fetch --unshallow" in one_error_line(failed.stderr)


@pytest.mark.skipif(
    make_fixtures.legacy_venv() is None, reason="set GIT_THETA_LEGACY_VENV to a venv with git-theta 0.2.0"
)
def test_repositories_made_now_by_git_theta_0_2(installed: Path, tmp_path: Path) -> None:
    venv = make_fixtures.legacy_venv()
    assert venv is not None
    built, out = tmp_path / "built", tmp_path / "fixtures"
    built.mkdir()
    expected = make_fixtures.build(venv, built, full=False)
    make_fixtures.export(built, expected, out)
    for name in expected:
        work = tmp_path / name
        work.mkdir()
        repo = clone(make_remote(out, name, work), work)
        check_commits(repo, expected[name], name)
