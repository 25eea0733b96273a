"""How every merge was made, recorded with the commit (docs/merges.md, "Provenance"), shown by git theta log and
rerun by git theta merge --replay; and the greedy soup, whose right answer is known."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tests.e2e.test_merge import F, assert_clean, branches, commit, load
from tests.helpers import git, save_safetensors, theta


def rev(repo: Path, name: str) -> str:
    return git("rev-parse", name, cwd=repo).stdout.decode().strip()


def metadata(repo: Path, name: str = "HEAD") -> dict:
    return json.loads(git("cat-file", "blob", f"{name}:{F}", cwd=repo).stdout)


def test_a_driver_merge_records_its_recipe_and_replays_to_the_same_bytes(repo: Path) -> None:
    branches(repo)
    ours, theirs = rev(repo, "main"), rev(repo, "side")
    blobs = [rev(repo, f"{name}:{F}") for name in (f"{ours}^", ours, theirs)]
    env = {"GIT_THETA_MERGE_STRATEGY": "dare:drop=0.5,seed=7", "GIT_THETA_MERGE_PATTERNS": "*.bias=ours"}
    git("merge", "-q", "--no-edit", "side", cwd=repo, env=env)
    spec = "dare:drop=0.5,seed=7,lambda=1.0,then=task-arithmetic,density=1.0"
    assert metadata(repo)["merge"] == {
        "by": "merge",
        "from": [ours, theirs],
        "inputs": blobs,
        "merged": {"ours": 1, spec: 1},
        "patterns": [["*.bias", "ours"]],
        "strategy": spec,
    }
    assert_clean(repo)
    (repo / F).touch()  # git status cleans the file again: the record stays with the exact checkpoint
    assert_clean(repo)
    log = theta("log", "-n", "1", F, cwd=repo).stdout.decode()
    assert f"merged with {spec} (1 tensor), ours (1 tensor) from {ours[:7]}, {theirs[:7]}" in log
    assert b"gives the same checkpoint" in theta("merge", "--replay", "HEAD", cwd=repo).stdout

    # The same merge again writes the same bytes: the record is a function of content and history.
    first = git("rev-parse", f"HEAD:{F}", cwd=repo).stdout
    git("reset", "-q", "--hard", "HEAD~1", cwd=repo)
    git("merge", "-q", "--no-edit", "side", cwd=repo, env=env)
    assert git("rev-parse", f"HEAD:{F}", cwd=repo).stdout == first

    # Any change to the checkpoint drops the record: it no longer says how this version was made.
    save_safetensors(repo / F, {**load(repo), "layer.bias": np.zeros(8, np.float32)})
    git("commit", "-q", "-am", "edit", cwd=repo)
    assert "merge" not in metadata(repo)


def test_a_doctored_record_does_not_replay(repo: Path) -> None:
    branches(repo)
    git("merge", "-q", "--no-edit", "side", cwd=repo, env={"GIT_THETA_MERGE_STRATEGY": "average"})
    doc = git("cat-file", "blob", f"HEAD:{F}", cwd=repo).stdout.replace(b'"strategy": "average"', b'"strategy": "ours"')
    blob = git("hash-object", "-w", "--stdin", cwd=repo, input=doc).stdout.decode().strip()
    git("update-index", "--cacheinfo", f"100644,{blob},{F}", cwd=repo)
    git("commit", "-q", "-m", "claims another recipe", cwd=repo)
    result = theta("merge", "--replay", "HEAD", cwd=repo, check=False)
    assert result.returncode == 1
    assert b"the replay differs from HEAD in 2 tensor(s)" in result.stderr
    unmerged = theta("merge", "--replay", "HEAD~2", cwd=repo, check=False)
    assert unmerged.returncode == 1 and b"records no merge made by git-theta" in unmerged.stderr


def test_resolving_a_conflicted_cherry_pick_in_place_transfers_and_records(repo: Path) -> None:
    base, ours, theirs = branches(repo)
    picked = rev(repo, "side")
    assert git("cherry-pick", "side", cwd=repo, check=False).returncode != 0  # no strategy: a conflict
    theta("merge", "--strategy", "task-arithmetic:lambda=0.5", cwd=repo)
    git("-c", "core.editor=true", "cherry-pick", "--continue", cwd=repo)
    got = load(repo)
    wide = {
        name: {k: v.astype(np.float64) for k, v in m.items()} for name, m in (("b", base), ("o", ours), ("t", theirs))
    }
    for name in ("layer.weight", "layer.bias"):
        expected = (wide["o"][name] + 0.5 * (wide["t"][name] - wide["b"][name])).astype(np.float32)
        assert np.array_equal(got[name], expected), name
    record = metadata(repo)["merge"]
    assert record["by"] == "cherry-pick" and record["transfer"] is True and record["from"][1] == picked
    assert b"gives the same checkpoint" in theta("merge", "--replay", "HEAD", cwd=repo).stdout


def test_git_theta_merge_writes_trailers_that_replay(repo: Path) -> None:
    base = {"w": np.linspace(-1, 1, 64, dtype=np.float32), "b": np.ones(4, np.float32)}
    commit(repo, base, "base")
    for index, name in enumerate("ab"):
        git("checkout", "-q", "-b", name, "main", cwd=repo)
        rng = np.random.default_rng(index)
        commit(repo, {k: v + rng.standard_normal(v.shape).astype(np.float32) for k, v in base.items()}, name)
    git("checkout", "-q", "main", cwd=repo)
    theta("merge", "-s", "ties:density=0.5", "--pattern", "b=theirs", "--weight", "a=2", "a", "b", cwd=repo)
    message = git("log", "-1", "--format=%B", cwd=repo).stdout.decode()
    assert message.endswith(
        "\n\nTheta-Merge: ties:density=0.5,lambda=1.0\nTheta-Merge-Pattern: b=theirs\nTheta-Merge-Weights: 1/2/1\n\n"
    )
    log = theta("log", "-n", "1", F, cwd=repo).stdout.decode()
    parents = git("log", "-1", "--format=%p", cwd=repo).stdout.decode().split()
    assert f"merged with ties:density=0.5,lambda=1.0 from {', '.join(parents)}" in log
    assert b"gives the same checkpoint" in theta("merge", "--replay", "HEAD", cwd=repo).stdout


SCORE = """
import sys
from safetensors.numpy import load_file
w = load_file(sys.argv[1] + "/model.safetensors")["w"].astype("float64")
print("evaluated", sys.argv[1], "on 4 numbers")
print(f"score {-(w ** 2).sum():.6f}")
"""


def test_greedy_soup_keeps_what_helps_and_commits_the_soup_it_scored(repo: Path) -> None:
    (repo / "score.py").write_text(SCORE)
    git("add", "score.py", cwd=repo)
    commit(repo, {"w": np.full(4, 2.0, np.float32)}, "base")  # HEAD: score -16
    values = {"a": [1, 0, 0, 0], "b": [0, 1.1, 0, 0], "c": [3, 3, 3, 3]}  # alone: -1, -1.21, -36
    for name, value in values.items():
        git("checkout", "-q", "-b", name, "main", cwd=repo)
        commit(repo, {"w": np.array(value, np.float32)}, name)
    git("checkout", "-q", "main", cwd=repo)
    head = rev(repo, "HEAD")
    result = theta("merge", "-s", "greedy-soup", "--eval", f"{sys.executable} score.py {{}}", "a", "b", "c", cwd=repo)
    progress = [line for line in result.stderr.decode().splitlines() if "greedy-soup: [" in line]
    assert len(progress) == 14 and progress[-1].endswith("[7/7] a + b + c: -5.64556")
    # Ranked a, b, HEAD, c; a + b (-0.5525) beats a alone (-1); adding HEAD (-2.957) or c (-5.646) does not.
    parents = git("log", "-1", "--format=%P", cwd=repo).stdout.decode().split()
    assert parents == [head, rev(repo, "a"), rev(repo, "b")]
    message = git("log", "-1", "--format=%B", cwd=repo).stdout.decode()
    assert message.startswith("Greedy soup of a, b (git theta merge)\n\nRejected: HEAD, c\n\n")
    assert "Theta-Merge: greedy-soup\nTheta-Merge-Weights: 0/1/1\n" in message
    assert f"Theta-Merge-Score: {rev(repo, 'b')} own=-1.21 soup=-0.5525 kept\n" in message
    assert f"Theta-Merge-Score: {rev(repo, 'c')} own=-36 soup=-5.64556 rejected\n" in message
    a, b = (np.array(values[name], np.float32).astype(np.float64) for name in "ab")
    expected = ((a + b) / 2).astype(np.float32)  # the uniform average of the kept, in float64, rounded once
    assert np.array_equal(load(repo)["w"], expected)
    assert_clean(repo)
    assert not list((repo / ".git").glob("theta-soup-*"))  # the scratch space is gone
    log = theta("log", "-n", "1", F, cwd=repo).stdout.decode()
    assert "merged with greedy-soup from" in log and f"rejected {rev(repo, 'HEAD~1')[:7]} (-2.95667)" in log
    assert b"gives the same checkpoint" in theta("merge", "--replay", "HEAD", cwd=repo).stdout

    # Lower is better: c alone wins, and nothing added to it helps.
    git("reset", "-q", "--hard", "HEAD~1", cwd=repo)
    command = f"{sys.executable} score.py {{}}"
    theta("merge", "-s", "greedy-soup", "--eval", command, "--minimize", "--exclude-head", "a", "b", "c", cwd=repo)
    assert git("log", "-1", "--format=%P", cwd=repo).stdout.decode().split() == [head, rev(repo, "c")]
    assert np.array_equal(load(repo)["w"], np.full(4, 3.0, np.float32))

    failing = theta("merge", "-s", "greedy-soup", "--eval", "exit 3 {}", "a", "b", cwd=repo, check=False)
    assert failing.returncode == 1 and b"the evaluation command exited with 3" in failing.stderr
    usage = theta("merge", "-s", "greedy-soup", "a", "b", cwd=repo, check=False)
    assert usage.returncode == 2 and b"--eval CMD" in usage.stderr
