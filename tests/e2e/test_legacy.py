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
    driver = git("config", "--global", "diff.theta.command", cwd=repo).stdout.decode().strip()
    assert driver == f"{shutil.which('git-theta')} diff-driver"
    assert not (hooks / "post-commit").exists() and "git-theta hook" in (hooks / "pre-push").read_text()
    assert git("show", "HEAD:model.pt", cwd=repo).stdout.startswith(b'{\n  "git_theta_metadata": ')
    assert tensors(repo / "model.pt", "torch") == expected["commits"][-1]["tensors"]
    assert_clean(repo, "model.pt")
    assert b"no checkpoint stored by Git-Theta 0.2" in theta("migrate", cwd=repo).stderr
    # The same tensors in the two formats: the migration commit changes none (their digests agree).
    assert json.loads(theta("diff", "HEAD~1", "HEAD", "--format", "json", cwd=repo).stdout)["checkpoints"] == []
    assert b"@@ 0 changed, 0 added, 0 removed, 5 unchanged @@" in git("diff", "HEAD~1", "HEAD", cwd=repo).stdout

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


def values_at(repo: Path, commit: str, tmp_path: Path) -> dict[str, np.ndarray]:
    """The tensors our smudge filter rebuilds for ``commit`` (checked against the old tool's own checkout)."""
    file = tmp_path / f"{commit}.pt"
    file.write_bytes(git("cat-file", "--filters", f"{commit}:model.pt", cwd=repo).stdout)
    values = make_fixtures.load_torch(file)
    record = next(r for r in EXPECTED["torch"]["commits"] if r["commit"] == commit)
    assert {name: make_fixtures.tensor_record(value) for name, value in values.items()} == record["tensors"]
    return values


def numpy_change(old: np.ndarray, new: np.ndarray) -> dict[str, float]:
    """docs/diff.md's statistics, computed directly with numpy."""
    changed = old.reshape(-1).view(f"u{old.itemsize}") != new.reshape(-1).view(f"u{new.itemsize}")
    o, n = old.astype(np.float64).reshape(-1), new.astype(np.float64).reshape(-1)
    l2 = float(np.linalg.norm(np.where(changed, n - o, 0.0)))
    return {
        "changed": int(changed.sum()),
        "elements": old.size,
        "l2": l2,
        "rel": l2 / float(np.linalg.norm(o)),
        "cos": float(o @ n) / float(np.linalg.norm(o) * np.linalg.norm(n)),
    }


def test_diff_between_legacy_commits(installed: Path, tmp_path: Path) -> None:
    repo = clone(make_remote(FIXTURES, "torch", tmp_path), tmp_path)
    commits = [record["commit"] for record in EXPECTED["torch"]["commits"]]
    values = {commit: values_at(repo, commit, tmp_path) for commit in (commits[0], commits[-2], commits[-1])}

    # git theta diff across the dense, low-rank, sparse and ia3 commits: every changed tensor, as numpy sees it.
    result = json.loads(theta("diff", commits[0], commits[-1], "--format", "json", cwd=repo).stdout)
    (checkpoint,) = result["checkpoints"]
    old, new = values[commits[0]], values[commits[-1]]
    changed = sorted(name for name in old if not np.array_equal(old[name], new[name]))
    assert sorted(t["name"] for t in checkpoint["tensors"]) == changed == ["scale", "w1", "w2"]
    assert checkpoint["unchanged"] == 2 and (checkpoint["added"], checkpoint["removed"]) == (0, 0)
    for tensor in checkpoint["tensors"]:
        expected = numpy_change(old[tensor["name"]], new[tensor["name"]])
        assert tensor["changed"] == expected["changed"] and tensor["elements"] == expected["elements"]
        for key in ("l2", "rel", "cos"):
            assert tensor[key] == pytest.approx(expected[key], rel=1e-9), (tensor["name"], key)

    # git diff, through our external driver: the same statistics, shaped like a diff.
    text = git("diff", "HEAD~1", "HEAD", cwd=repo).stdout.decode()
    stats = numpy_change(values[commits[-2]]["w2"], values[commits[-1]]["w2"])
    assert "@@ 1 changed, 0 added, 0 removed, 4 unchanged;" in text
    assert (
        f"+    w2  F32 [6, 4]  norm {np.linalg.norm(values[commits[-1]]['w2'].astype(np.float64)):.3e}  "
        f"changed {stats['changed']}/24 ({stats['changed'] / 24:.2%})  l2 {stats['l2']:.3e}  "
        f"rel {stats['rel']:.3e}  cos {stats['cos']:.6f}\n"
    ) in text

    # git theta log: every commit, each compared with its parent.
    history = json.loads(theta("log", "model.pt", "--format", "json", cwd=repo).stdout)
    assert [entry["commit"] for entry in history] == commits[::-1]
    assert [entry["changed"] for entry in history] == [1, 1, 1, 2, 0] and history[-1]["added"] == 5

    # git log -p (textconv, on the checkpoints the smudge filter rebuilds): a changed line per changed tensor.
    patch = git("log", "-p", "-1", cwd=repo).stdout.decode()
    w2 = np.ascontiguousarray(values[commits[-1]]["w2"], dtype="<f4")
    assert f"+w2  F32 [6, 4]  sha256:{hashlib.sha256(w2.tobytes()).hexdigest()[:12]}\n" in patch
    assert sum(line.startswith(("-w2 ", "+w2 ")) for line in patch.splitlines()) == 2


def test_ls_and_fsck_name_legacy_checkpoints(installed: Path, tmp_path: Path) -> None:
    repo = clone(make_remote(FIXTURES, "torch", tmp_path), tmp_path)
    listed = theta("ls", "HEAD", cwd=repo).stdout.decode().splitlines()
    assert listed[0].startswith("model.pt  (Git-Theta 0.2 format; run git theta migrate; 5 tensors")
    rows = {line.split()[0]: line.split()[1:] for line in listed[2:]}
    record = EXPECTED["torch"]["commits"][-1]["tensors"]
    assert sorted(rows) == sorted(record)
    assert rows["w1"][:2] == ["F32", "8x6"] and rows["w2"][-3:] == ["ia3", "(of", "efea799f6aec)"]
    as_json = json.loads(theta("ls", "--json", cwd=repo).stdout)["model.pt"]
    assert as_json["format"] == "git-theta 0.2"
    assert {name: t["shape"] for name, t in as_json["tensors"].items()} == {n: t["shape"] for n, t in record.items()}

    flagged = theta("fsck", cwd=repo, check=False)  # Git-Theta 0.2 wrote its .gitattributes line without -text
    assert flagged.returncode == 1 and flagged.stdout.decode().endswith("run: git theta track model.pt\n")
    theta("track", "model.pt", cwd=repo)
    checked = theta("fsck", cwd=repo)
    notes = [line for line in checked.stderr.decode().splitlines() if line.startswith("git-theta: ")]
    assert len(notes) == 1 and "not checked: model.pt in Git-Theta 0.2's format" in notes[0]
