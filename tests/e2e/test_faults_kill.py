"""End to end: kill -9 of the filter, of git, or of a whole command during add, checkout, pull and push.

After each: no lock left by us, every stored object intact, ``git theta fsck`` clean, and the retry gives the same
bytes. The kills happen at observed points of the work (k objects stored, half the checkpoint smudged), not after
fixed delays.
"""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import psutil
import pytest

from tests.faults import (
    Command,
    assert_fsck_clean,
    assert_no_index_lock,
    assert_store_intact,
    big_model,
    commit_again_and_check_out,
    gone,
    remove_index_lock_of_killed_git,
    running,
    stored_objects,
    theta_errors,
    until,
)
from tests.helpers import git, save_safetensors, theta
from tests.remotes import HttpRemote

MODEL = "model.safetensors"


def wait_for_orphan(filter_process: psutil.Process, command: Command, operation: str) -> None:
    """Once git is gone, its filter must notice (end of input, broken pipe), say so, and exit rather than linger.

    It says nothing when it had already answered git in full (on a busy machine the kill may come that late).
    """
    until(lambda: gone(filter_process), "the filter to exit by itself once git was killed")
    said = command.stderr()
    errors = theta_errors(said)
    expected = f"git closed the connection in the middle of {operation} '{MODEL}'"
    assert not errors or expected in errors[-1], said
    assert "disk space" not in said and "Traceback" not in said and "Exception ignored" not in said, said


def kill(
    command: Command, filter_process: psutil.Process, victim: str, repo: Path, operation: str, whole: int = 0
) -> int:
    """kill -9 the filter or git; once git is gone, check its filter went too and remove git's lock as a user would.

    ``whole``: bytes of a complete answer of the filter (a smudge). On a fast machine the filter may have sent all
    of it before the kill lands; git then finishes the command, and may succeed."""
    answered = whole and smudged(filter_process) >= whole
    (filter_process if victim == "filter" else command.git).kill()
    code = command.wait()
    if victim == "git":
        assert code == -signal.SIGKILL
        wait_for_orphan(filter_process, command, operation)
        remove_index_lock_of_killed_git(repo)
    else:
        assert code != 0 or answered, command.stderr()
    return code


@pytest.mark.parametrize(
    ("victim", "objects"),
    [("filter", 1), ("filter", 6), ("git", 1), ("git", 6)],
    ids=["filter-after-1-object", "filter-after-6-objects", "git-after-1-object", "git-after-6-objects"],
)
def test_kill_during_add_stages_nothing_and_the_retry_stores_the_same(
    repo: Path, tmp_path: Path, victim: str, objects: int
) -> None:
    # 24 tensors: once 6 are stored, 18 (45 MiB) are left; with 12, a fast add finished before git was killed.
    save_safetensors(repo / MODEL, big_model(seed=1, tensors=24))
    original = (repo / MODEL).read_bytes()

    with running("add", MODEL, cwd=repo) as add:
        filter_process = add.find("filter-process")
        until(lambda: len(stored_objects(repo)) >= objects, f"{objects} object(s) stored", add)
        kill(add, filter_process, victim, repo, "clean")
        if victim == "filter":
            assert f"{MODEL}: clean filter 'theta' failed" in add.stderr()
    assert_no_index_lock(repo)
    assert git("ls-files", "--", MODEL, cwd=repo).stdout == b""  # nothing staged
    assert_store_intact(repo)
    assert_fsck_clean(repo)

    commit_again_and_check_out(repo, MODEL, original)
    # What the killed add left behind changes nothing: an add that was never interrupted stores the same metadata.
    reference = tmp_path / "reference"
    git("init", "-q", str(reference), cwd=tmp_path)
    (reference / ".gitattributes").write_bytes((repo / ".gitattributes").read_bytes())
    (reference / MODEL).write_bytes(original)
    git("add", ".gitattributes", MODEL, cwd=reference)
    assert git("rev-parse", f":{MODEL}", cwd=reference).stdout == git("rev-parse", f"HEAD:{MODEL}", cwd=repo).stdout


def commit_model(repo: Path, seed: int, message: str, tensors: int = 8) -> bytes:
    save_safetensors(repo / MODEL, big_model(seed, tensors))  # smudging is watched byte by byte: smaller will do
    git("add", MODEL, cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)
    return (repo / MODEL).read_bytes()


def smudged(process: psutil.Process) -> int:
    """Bytes the filter wrote so far (nearly all of them the checkpoint it sends git); 0 once it is gone."""
    try:
        return process.io_counters().write_chars
    except psutil.Error:
        return 0


@pytest.mark.parametrize(
    ("victim", "fraction"),
    [("filter", 0.0), ("filter", 0.5), ("git", 0.5)],
    ids=["filter-at-start", "filter-halfway", "git-halfway"],
)
def test_kill_during_checkout_never_leaves_a_partial_checkpoint(repo: Path, victim: str, fraction: float) -> None:
    target = commit_model(repo, seed=1, message="target")
    git("checkout", "-q", "-b", "other", cwd=repo)
    old = commit_model(repo, seed=2, message="other")  # the checkout replaces it with the target

    with running("checkout", "main", cwd=repo) as checkout:
        filter_process = checkout.find("filter-process")
        until(lambda: smudged(filter_process) >= fraction * len(target), f"{fraction:.0%} smudged", checkout)
        kill(checkout, filter_process, victim, repo, "smudge", whole=len(target))
    assert_no_index_lock(repo)
    left = (repo / MODEL).read_bytes() if (repo / MODEL).exists() else None
    if victim == "git" and left not in (None, old, target):
        # git writes a working file itself once the filter has answered, and a kill -9 of git can cut that write
        # short: what it had written is then a start of the target, never other bytes.
        assert left is not None and target.startswith(left)
    else:
        assert left in (None, old, target)  # absent, the old checkpoint or the new one: never a part of one
    assert_store_intact(repo)
    assert_fsck_clean(repo)

    git("checkout", "-q", "-f", "main", cwd=repo)
    assert (repo / MODEL).read_bytes() == target
    assert git("status", "--porcelain", cwd=repo).stdout == b""


def lazy_clone(remote: HttpRemote, dest: Path) -> None:
    """Clone ``remote`` with metadata in place of the checkpoints (GIT_LFS_SKIP_SMUDGE=1), as test_lazy.py does."""
    git(
        "clone", "-q", "-c", f"remote.origin.lfsurl={remote.lfs_url}", str(remote.path), str(dest),
        cwd=dest.parent, env={"GIT_LFS_SKIP_SMUDGE": "1"},
    )  # fmt: skip


@pytest.mark.parametrize("point", ["downloading", "git-lfs", "checking-out", "filter"])
def test_kill_during_pull_then_pull_again_gives_the_checkpoint(
    repo: Path, http_remote: HttpRemote, tmp_path: Path, point: str
) -> None:
    http_remote.add_to(repo)
    original = commit_model(repo, seed=1, message="model", tensors=12)  # a checkout that lasts while it is watched
    git("push", "-q", "origin", "main", cwd=repo)
    clone = tmp_path / "clone"
    lazy_clone(http_remote, clone)
    metadata = (clone / MODEL).read_bytes()

    with running("theta", "pull", cwd=clone) as pull:
        if point == "downloading":  # the whole command dies, as when its terminal goes away
            until(lambda: len(stored_objects(clone)) >= 3, "3 objects downloaded", pull)
            pull.kill_group()
        elif point == "git-lfs":  # only the downloader dies
            downloader = pull.find("lfs fetch")
            until(lambda: len(stored_objects(clone)) >= 1, "1 object downloaded", pull)  # 7 to go: still at work
            downloader.kill()
        else:  # the checkout it runs, with the metadata file moved aside, has part of the checkpoint from the filter

            def under_way() -> psutil.Process | None:  # the checkout's filter: pull may run a short one before it
                return next((p for p in pull.every("filter-process") if smudged(p) >= len(original) // 4), None)

            # A quarter, not half: the checkout must still be at work when the watcher, polling every process of
            # the pull under load, sees how far it got.
            filter_process = until(under_way, "a quarter of the checkpoint smudged", pull)
            # Stopped at once, it cannot finish the checkout while the group is looked up and killed (a fast
            # checkout of the rest could, and the pull then ended well before any kill).
            filter_process.suspend()
            filter_process.kill() if point == "filter" else pull.kill_group()
        code = pull.wait()
    if point == "git-lfs" and code == 0:  # the checkout's filter downloaded what the killed git-lfs had not
        assert (clone / MODEL).read_bytes() == original
        assert git("status", "--porcelain", cwd=clone).stdout == b""
        return
    assert code != 0, pull.stderr()
    if point == "git-lfs":
        [message] = theta_errors(pull.stderr())
        assert "git-lfs" in message and "signal 9" in message
    if (clone / ".git" / "index.lock").exists():
        assert point == "checking-out", "only a killed git may leave its index.lock"
        remove_index_lock_of_killed_git(clone)
    if point == "checking-out":  # killed with git writing the checkpoint: the metadata file is still aside
        assert (clone / f"{MODEL}.theta-pull").read_bytes() == metadata
    else:
        assert (clone / MODEL).read_bytes() == metadata  # as it was before the pull
    assert_store_intact(clone)  # (fsck would report what a lazy clone lacks until it is pulled)

    theta("pull", cwd=clone)  # after a kill during its checkout, it puts the metadata file back and starts over
    assert (clone / MODEL).read_bytes() == original
    assert git("status", "--porcelain", cwd=clone).stdout == b""
    assert_fsck_clean(clone)


def whole(path: Path) -> bool:
    """Tell whether an object on the server hashes to its name."""
    return hashlib.sha256(path.read_bytes()).hexdigest() == path.name


@pytest.mark.parametrize("point", ["push-after-1-object", "git-after-1-object", "git-lfs-after-4-objects"])
def test_kill_during_push_moves_no_ref_and_the_retry_completes(
    repo: Path, http_remote: HttpRemote, tmp_path: Path, point: str
) -> None:
    http_remote.add_to(repo)
    save_safetensors(repo / MODEL, big_model(seed=1))
    git("add", MODEL, cwd=repo)
    git("commit", "-q", "-m", "model", cwd=repo)
    original = (repo / MODEL).read_bytes()

    with running("push", "-q", "origin", "main", cwd=repo) as push:
        if point == "push-after-1-object":  # git, its pre-push hook and git-lfs die together
            until(lambda: len(http_remote.objects()) >= 1, "1 object uploaded", push)
            push.kill_group()
        elif point == "git-after-1-object":  # git alone: its orphaned hook may go on uploading, but no ref moves
            until(lambda: len(http_remote.objects()) >= 1, "1 object uploaded", push)
            push.git.kill()
            until(lambda: not push.survivors(), "the orphaned hook and git-lfs to end")
        else:
            uploader = push.find("lfs push")  # the upload, not the git-lfs that reports the endpoint first
            until(lambda: len(http_remote.objects()) >= 4, "4 objects uploaded", push)
            uploader.kill()
        code = push.wait()
        assert code != 0, push.stderr()
    if point == "git-lfs-after-4-objects":
        [message] = theta_errors(push.stderr())
        assert "uploading 12 tensor object(s) to 'origin' failed" in message
    assert git("ls-remote", str(http_remote.path), cwd=repo).stdout == b""  # no ref moved
    # What the server kept is whole, once it has written out the uploads it had received in full.
    until(
        lambda: all(whole(http_remote.object_path(oid)) for oid in http_remote.objects()), "whole objects on the server"
    )

    git("push", "-q", "origin", "main", cwd=repo)
    assert http_remote.objects() == {path.name for path in stored_objects(repo)}
    theta("fsck", "--remote", cwd=repo)
    clone = tmp_path / "clone"
    http_remote.clone(clone)
    assert (clone / MODEL).read_bytes() == original
    assert git("status", "--porcelain", cwd=clone).stdout == b""
