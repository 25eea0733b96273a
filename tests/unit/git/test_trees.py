"""Listing the index and HEAD side by side gives what listing them one after the other gives."""

from __future__ import annotations

import subprocess
from pathlib import Path

from git_theta.git.trees import Listing, index_blobs, tree_blobs


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_listing_before_and_after_the_first_commit(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("a")
    _git(tmp_path, "add", "a.txt")
    assert Listing(str(tmp_path)).blobs() == (index_blobs([], str(tmp_path)), {})  # no HEAD yet
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b c.txt").write_text("b")
    _git(tmp_path, "add", "sub")
    staged, committed = Listing(str(tmp_path)).blobs()
    assert staged == index_blobs([], str(tmp_path)) and set(staged) == {"a.txt", "sub/b c.txt"}
    assert committed == tree_blobs("HEAD", [], str(tmp_path)) and set(committed) == {"a.txt"}


def test_a_listing_stopped_unread_leaves_no_git_process(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    listing = Listing(str(tmp_path))
    listing.stop()
    assert all(process.returncode is not None for process in listing._started.result())  # ended and reaped
