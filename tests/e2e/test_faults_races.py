"""End to end: a full disk under add and checkout, two worktrees adding at once, and git theta gc during an add.

After each: every stored object intact, ``git theta fsck`` clean, and what was committed checks out byte for byte.
"""

from __future__ import annotations

import resource
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults import (
    MiB,
    assert_fsck_clean,
    assert_no_index_lock,
    assert_store_intact,
    big_model,
    check_out_again,
    commit_again_and_check_out,
    held_filters,
    running,
    stored_objects,
    temporary_files,
    theta_errors,
    until,
)
from tests.helpers import git, save_safetensors, theta

MODEL = "model.safetensors"


def limit_file_size(limit: int) -> Callable[[], None]:
    """Run in the child before exec: writes past ``limit`` bytes fail with EFBIG, as a full disk fails them."""

    def limit_it() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # otherwise the signal kills git before the write fails
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_it


def test_a_full_disk_under_a_multi_tensor_add_fails_it_cleanly_and_a_retry_works(repo: Path) -> None:
    save_safetensors(repo / MODEL, big_model(seed=1))
    original = (repo / MODEL).read_bytes()
    # Objects of the 1 MiB tensors fit, the others do not: some writers fail while others are at work or done.
    limited = subprocess.run(
        ["git", "add", MODEL], cwd=repo, capture_output=True, preexec_fn=limit_file_size(int(1.5 * MiB))
    )
    stderr = limited.stderr.decode(errors="replace")
    assert limited.returncode != 0
    [message] = theta_errors(stderr)
    assert f"{MODEL}: File too large" in message and "free some disk space" in message
    assert "Traceback" not in stderr
    assert git("ls-files", "--", MODEL, cwd=repo).stdout == b""  # nothing staged
    assert_no_index_lock(repo)
    leftovers = temporary_files(repo)  # no half-written object may be left behind, whichever writer failed
    assert_store_intact(repo)
    assert_fsck_clean(repo)

    git("add", MODEL, cwd=repo)
    git("commit", "-q", "-m", "after the disk was freed", cwd=repo)
    assert check_out_again(repo, MODEL) == original
    assert git("status", "--porcelain", cwd=repo).stdout == b""
    assert_fsck_clean(repo)
    assert leftovers == []  # a failed write removes its temporary file


def test_a_full_disk_under_a_checkout_leaves_a_partial_file_that_cannot_be_committed_by_mistake(repo: Path) -> None:
    save_safetensors(repo / MODEL, big_model(seed=1, tensors=8))
    git("add", MODEL, cwd=repo)
    git("commit", "-q", "-m", "model", cwd=repo)
    original = (repo / MODEL).read_bytes()
    (repo / MODEL).unlink()

    limited = subprocess.run(
        ["git", "checkout", "--", MODEL], cwd=repo, capture_output=True, preexec_fn=limit_file_size(4 * MiB)
    )
    assert limited.returncode != 0
    # git writes the working file itself, from what the filter sent it, and leaves what it could write.
    assert f"unable to write file {MODEL}" in limited.stderr.decode()
    assert len((repo / MODEL).read_bytes()) < len(original)

    refused = git("add", MODEL, cwd=repo, check=False)  # the clean filter refuses the truncated checkpoint
    assert refused.returncode != 0
    [message] = theta_errors(refused.stderr.decode())
    assert MODEL in message and "truncated" in message
    assert git("diff", "--cached", "--name-only", cwd=repo).stdout == b""
    git("checkout", "--", MODEL, cwd=repo)
    assert (repo / MODEL).read_bytes() == original
    assert git("status", "--porcelain", cwd=repo).stdout == b""
    assert_fsck_clean(repo)


def test_two_worktrees_adding_checkpoints_that_share_tensors_at_once(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    git("worktree", "add", "-q", "-b", "side", str(other), cwd=repo)
    base = big_model(seed=1)
    tuned = {name: value if i % 2 else -value for i, (name, value) in enumerate(base.items())}  # half shared
    save_safetensors(repo / MODEL, base)
    save_safetensors(other / MODEL, tuned)
    originals = {repo: (repo / MODEL).read_bytes(), other: (other / MODEL).read_bytes()}

    with (
        running("add", MODEL, cwd=repo, env=held_filters(repo)) as first,
        running("add", MODEL, cwd=other, env=held_filters(other)) as second,
    ):
        # Both filters are held at their start until both exist, then let go at once: they store at the same time.
        for held in [first.held_filter(), second.held_filter()]:
            held.resume()
        assert first.wait() == 0, first.stderr()
        assert second.wait() == 0, second.stderr()

    for worktree in (repo, other):
        git("commit", "-q", "-m", f"model of {worktree.name}", cwd=worktree)
    assert_no_index_lock(repo)
    assert temporary_files(repo) == []
    assert_store_intact(repo)
    for worktree, original in originals.items():
        assert_fsck_clean(worktree)
        assert check_out_again(worktree, MODEL) == original
        assert git("status", "--porcelain", cwd=worktree).stdout == b""


@pytest.mark.parametrize("where", ["same-worktree", "linked-worktree"])
def test_gc_during_an_add_keeps_the_objects_the_add_is_writing(repo: Path, tmp_path: Path, where: str) -> None:
    save_safetensors(repo / "small.safetensors", big_model(seed=2, tensors=2))
    git("add", "small.safetensors", cwd=repo)
    git("commit", "-q", "-m", "something referenced", cwd=repo)
    adding = repo
    if where == "linked-worktree":
        adding = tmp_path / "other"
        git("worktree", "add", "-q", "-b", "side", str(adding), cwd=repo)
    save_safetensors(adding / MODEL, big_model(seed=1))
    original = (adding / MODEL).read_bytes()
    before = {path.name for path in stored_objects(repo)}

    with running("add", MODEL, cwd=adding) as add:
        add.find("filter-process")
        until(lambda: len(stored_objects(repo)) >= len(before) + 3, "3 objects of the add stored", add)
        written = {path.name for path in stored_objects(repo)}
        gc = theta("gc", cwd=repo, check=False)
        # The add holds its worktree's index.lock, which gc takes too: gc must refuse, or else spare the add's objects.
        if gc.returncode != 0:
            assert b"another git command is running" in gc.stderr, gc.stderr
        assert written <= {path.name for path in stored_objects(repo)}, gc.stdout
        assert add.wait() == 0, add.stderr()

    git("commit", "-q", "-m", "model", cwd=adding)
    assert "removed 0 " in theta("gc", cwd=repo).stdout.decode()  # the add's objects are referenced now
    assert_store_intact(repo)
    assert_fsck_clean(repo)
    assert check_out_again(adding, MODEL) == original
    assert git("status", "--porcelain", cwd=adding).stdout == b""


def test_gc_after_an_add_was_killed_removes_its_leftovers_only_and_the_retry_works(repo: Path) -> None:
    save_safetensors(repo / "small.safetensors", big_model(seed=2, tensors=2))
    git("add", "small.safetensors", cwd=repo)
    git("commit", "-q", "-m", "something referenced", cwd=repo)
    referenced = {path.name for path in stored_objects(repo)}
    save_safetensors(repo / MODEL, big_model(seed=1))
    original = (repo / MODEL).read_bytes()

    with running("add", MODEL, cwd=repo) as add:
        filter_process = add.find("filter-process")
        until(lambda: len(stored_objects(repo)) >= len(referenced) + 4, "4 objects of the add stored", add)
        filter_process.kill()
        assert add.wait() != 0
    assert len(stored_objects(repo)) > len(referenced)

    out = theta("gc", cwd=repo).stdout.decode()
    assert {path.name for path in stored_objects(repo)} == referenced, out
    assert_store_intact(repo)
    assert_fsck_clean(repo)
    commit_again_and_check_out(repo, MODEL, original)
